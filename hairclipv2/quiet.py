"""Warnings a default run prints that say nothing the user can act on, silenced by exact message in
this one place. Every warning about the user's own run (random weights, missing files, skipped
images) is kept."""

from __future__ import annotations

import logging
import re
import warnings

# message (a regex matched at its start) -> why it says nothing to the user
KNOWN_NOISE = {
    r"`\.fit\(ckpt_path=None\)` was called without a model": (
        "Lightning turns ckpt_path=None into 'last' when an on-exception checkpoint callback is present; "
        "train.py decides every resume itself (resume_dir, auto_resume) and says so"
    ),
    r'\.fit\(ckpt_path="last"\) is set, but there is no last checkpoint available': "the same, on a fresh run",
    r"The parameter 'pretrained' is deprecated": "the lpips package builds torchvision's AlexNet / VGG the old way",
    r"Arguments other than a weight enum or `None` for 'weights' are deprecated": "the same call of lpips",
    r"`isinstance\(treespec, LeafSpec\)` is deprecated": "Lightning's own code on this torch version",
    r"Found \d+ module\(s\) in eval mode at the start of training": (
        "the frozen networks (generator, LPIPS, identity) are in eval mode on purpose"
    ),
    r"Using ModelCheckpoint with manual optimization and every_n_train_steps": (
        "e4e steps its optimisers itself; the state after a step is the one a resume needs "
        "(tests/test_training.py resumes bit-identically)"
    ),
}

# logger name -> {message (regex matched at its start) -> why}: info lines printed through logging
KNOWN_LOG_NOISE = {
    "pytorch_lightning.utilities.rank_zero": {
        r"💡 Tip: For seamless cloud": "advertisements for a hosted logger and model registry",
    },
    "root": {
        r"No pretrained weights loaded for model": (
            "open_clip's line for pretrained=None; CLIPModel warns about CLIP's random weights itself"
        ),
        r"Using default SimpleTokenizer": "open_clip says which tokenizer it chose for a CLIP model",
    },
}

# packages whose INFO lines (on the root logger, which Hydra's apps print) narrate their own
# steps: their warnings and errors pass
CHATTY_PACKAGES = {"open_clip": "eleven lines per model load: the file it found, the config, the tokenizer"}


class _DropMessages(logging.Filter):
    def __init__(self, patterns: list[str]):
        super().__init__()
        self.patterns = [re.compile(p) for p in patterns]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.levelno < logging.WARNING and any(f"/{p}/" in record.pathname for p in CHATTY_PACKAGES):
            return False
        return not any(p.match(message) for p in self.patterns)


def silence_known_noise() -> None:
    """Ignore the warnings of KNOWN_NOISE and the log lines of KNOWN_LOG_NOISE (call once in an
    entry point; calling again adds nothing)."""
    for message in KNOWN_NOISE:
        warnings.filterwarnings("ignore", message=message)
    for name, messages in KNOWN_LOG_NOISE.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropMessages) for f in logger.filters):
            logger.addFilter(_DropMessages(list(messages)))
