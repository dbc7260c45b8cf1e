"""python -m bncli: the same as the bncli command."""

from bncli.entry import main

main()
