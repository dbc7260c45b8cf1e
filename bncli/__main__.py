"""python -m bncli: the same as the bncli command."""

from bncli.cli import main

main()
