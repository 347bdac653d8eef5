"""Client adapters for ``bench/overhead.py``: each module exposes ``NAME`` and ``make(base_url)``."""
