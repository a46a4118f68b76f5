"""``python -m mgfrec``: the ``mgfrec`` command (for an environment whose scripts folder is not on PATH)."""

from mgfrec.cli.main import main

if __name__ == "__main__":
    main()
