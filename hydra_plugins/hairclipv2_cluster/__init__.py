"""The project's Hydra launchers (a Hydra plugin package: Hydra imports plugins from hydra_plugins)."""
