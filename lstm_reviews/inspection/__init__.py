"""What the cell keeps and lets pass: gates per token, the memory ledger, and their tables,
figures and HTML."""
