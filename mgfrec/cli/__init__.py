"""The command line: one small module per subcommand, each a thin layer over a library function."""
