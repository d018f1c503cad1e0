"""Serving: the bundle of batch facts the real-time server reads (ottp/realtime/bundle.py)."""
