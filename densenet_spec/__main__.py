"""``python -m densenet_spec``: the same as the ``densenet-spec`` command."""

from .cli import run

run()
