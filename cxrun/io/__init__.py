"""I/O steps: AI providers, channels and plain HTTP calls, behind one small interface each."""
