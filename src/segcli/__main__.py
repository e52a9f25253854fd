"""`python -m segcli` runs the command-line interface."""

from segcli.cli import main

if __name__ == "__main__":
    main()
