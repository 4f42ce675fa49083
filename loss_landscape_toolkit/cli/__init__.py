"""The command-line programs: argument definitions, job set-up and run modes, one module per CLI."""
