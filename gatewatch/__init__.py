"""Command-line entry point that joins the edge and server command sets."""
