"""``rerank serve``: any reranking method or pipeline behind an HTTP API that search stacks already speak.

Modules: ``batcher`` coalesces concurrent requests into one ``rerank()`` call; ``api`` holds the
wire formats (Cohere v1/v2, Jina/Infinity, text-embeddings-inference); ``app`` builds the FastAPI
application (limits, keys, metrics); ``server`` loads the model and runs uvicorn with a graceful stop.
Needs the ``serve`` extra (``pip install -e '.[serve]'``).
"""
