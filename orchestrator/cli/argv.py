"""The command line as bytes: an argument that is not UTF-8 is refused, naming what it was for, before any verb runs.

Python hands argv bytes that are not UTF-8 over as lone surrogates (``\\udcff``); passed on, they would reach the
store or a terminal. :func:`refuse_undecodable` walks argv the way click will parse it, so the error names the
option (``--name``) or the positional argument (``RUN``) the bytes were given for.
"""

from __future__ import annotations

import click

from orchestrator.errors import SpecError


def _undecodable(text: str) -> bool:
    return any("\udc80" <= char <= "\udcff" for char in text)


def refuse_undecodable(group: click.Group, argv: list[str]) -> None:
    """Refuses an argument with bytes that are not UTF-8.

    Raises:
        SpecError: names the option or the positional argument (its metavar: ``RUN``) the value belongs to, and
            shows its first 80 bytes.
    """
    for position, arg in enumerate(argv):
        if _undecodable(arg):
            field, value = field_of(group, argv, position)
            raise SpecError(field, value.encode("utf-8", "surrogateescape")[:80],
                            "UTF-8 text (the bytes given are not)")


def field_of(group: click.Group, argv: list[str], target: int) -> tuple[str, str]:
    """What ``argv[target]`` is for, as click will parse argv: ``(field, the text given for it)``.

    The field is an option's name (``--name`` for ``--name X`` and ``--name=X``), a positional argument's metavar
    (``RUN``; its name in capitals when it has none), ``COMMAND`` for a word where a subcommand goes, or
    ``argument`` when argv does not say.
    """
    command: click.Command = group
    index = 0  # positional arguments of ``command`` seen so far
    position = 0
    only_positionals = False
    while position < len(argv):
        arg = argv[position]
        if not only_positionals and arg == "--":
            only_positionals = True
        elif not only_positionals and arg.startswith("-") and len(arg) > 1:
            name, equals, value = arg.partition("=")
            if position == target:
                return (name, value) if equals else ("argument", arg)
            option = next((p for p in command.params if isinstance(p, click.Option)
                           and name in (*p.opts, *p.secondary_opts)), None)
            if option is not None and not equals and not option.is_flag and not option.count:
                if position + 1 == target:
                    return name, argv[target]
                position += 1  # the option's value
        elif isinstance(command, click.Group) and not only_positionals:
            if position == target:
                return "COMMAND", arg
            found = command.commands.get(arg)
            if found is None:
                return "argument", argv[target]
            command, index = found, 0
        else:
            if position == target:
                return _argument_name(command, index), arg
            index += 1
        position += 1
    return "argument", argv[target]


def _argument_name(command: click.Command, index: int) -> str:
    """The metavar of ``command``'s ``index``-th positional value (one taking any number absorbs the rest)."""
    for param in command.params:
        if not isinstance(param, click.Argument):
            continue
        if param.nargs < 0 or index < param.nargs:
            return (param.metavar or (param.name or "argument").upper()).strip("[].")
        index -= param.nargs
    return "argument"
