"""The run's log file: Hydra writes `<run>/<job>.log` from the root logger, which Lightning's loggers
do not reach (they print to stderr and do not propagate), nor do the lines an entry point prints for
the user. `share_run_log` gives the file Lightning's lines; `say` prints a line and keeps it there."""

from __future__ import annotations

import logging

LIGHTNING = ("pytorch_lightning", "lightning_fabric")
log = logging.getLogger("hairclipv2.run")


def run_log_files() -> list[logging.FileHandler]:
    return [h for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]


def share_run_log(names: tuple[str, ...] = LIGHTNING) -> None:
    """Add the root logger's file handlers (Hydra's job log) to those of `names` that do not
    propagate to the root (idempotent)."""
    for name in names:
        logger = logging.getLogger(name)
        if logger.propagate:  # the root's handlers get its lines already
            continue
        for handler in run_log_files():
            if handler not in logger.handlers:
                logger.addHandler(handler)


def say(text: str) -> None:
    """Print `text` for the user (stdout, as it is) and append it to the run's log file."""
    print(text)
    for line in text.splitlines():
        record = log.makeRecord(log.name, logging.INFO, __file__, 0, line, None, None)
        for handler in run_log_files():
            if record.levelno >= handler.level:
                handler.handle(record)
