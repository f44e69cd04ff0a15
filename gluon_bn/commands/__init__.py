"""The ``gluon-bn`` commands, one module each: config in, record, report and plots out.

Each module holds its command's config, its ``run(config, log=print)`` and the writing of its
own report; :mod:`.shared` holds what they all need. The CLI (``gluon_bn.cli``) and the
notebooks call them the same way.
"""
from . import bench, compare, exercise, launch, reproduce

#: Each command's module, by its name on the command line.
COMMANDS = {"reproduce": reproduce, "compare": compare, "exercise": exercise, "bench": bench, "launch": launch}

__all__ = ["COMMANDS", "bench", "compare", "exercise", "launch", "reproduce"]
