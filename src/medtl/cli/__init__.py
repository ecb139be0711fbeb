"""The ``medtl`` command line: the argparse table (:mod:`.parser`), one ``cmd_<name>`` per
command (:mod:`.commands`) and the decision-file options (:mod:`.decisions`)."""

from medtl.cli.parser import main

__all__ = ["main"]
