"""Reranking methods; each module is one method, registered by name in ``rerank.registry``."""
