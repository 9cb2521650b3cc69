"""HairCLIPv2 editing: source embedding in (F, S), proxies (bald, text, reference, colour), batched optimisation."""
