"""The LSP server editors talk to; it reaches the model only through the runtime daemon protocol."""
