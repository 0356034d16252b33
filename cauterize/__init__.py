"""cauterize: incident response for leaked LLM API keys.

The core library is plain Python and never imports Prefect: flows/ and tasks/ bind it.
"""

__version__ = "0.1.0"
