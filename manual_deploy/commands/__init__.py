"""One module per CLI command: parse options, call the domain code, print the result."""
