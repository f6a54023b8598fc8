"""Rerankers inside other frameworks, each an optional extra: PyTerrier transformers (``rerank[pyterrier]``),
a LangChain document compressor (``rerank[langchain]``) and a LlamaIndex node postprocessor
(``rerank[llamaindex]``). Build them from a reranker: ``as_pyterrier()``, ``as_langchain()``, ``as_llamaindex()``.

These modules take any object with the methods they call: importing ``rerank.base`` (whose methods
import them) would be a cycle.
"""
