"""A reranker as a LlamaIndex node postprocessor (``node_postprocessors=[...]`` of a query engine)."""

from __future__ import annotations

from typing import Any

from data.optional import optional_dependency

with optional_dependency("llama_index"):
    from llama_index.core.postprocessor.types import BaseNodePostprocessor
    from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle
    from pydantic import Field


class RerankerNodePostprocessor(BaseNodePostprocessor):
    """Keeps the ``top_n`` nodes (all with None) in the reranker's order, scored by it.

    A node is ranked by its content with the metadata ``metadata_mode`` selects (none by default:
    the text alone).
    """

    reranker: Any = Field(exclude=True)  # a rerank.base.Reranker: anything with rank(query, texts)
    top_n: int | None = Field(default=3, ge=1)
    metadata_mode: MetadataMode = MetadataMode.NONE

    @classmethod
    def class_name(cls) -> str:
        return "RerankerNodePostprocessor"

    def _postprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        if query_bundle is None:
            raise ValueError("RerankerNodePostprocessor needs the query (query_bundle or query_str)")
        if not nodes:
            return []
        texts = [n.node.get_content(metadata_mode=self.metadata_mode) for n in nodes]
        result = self.reranker.rank(query_bundle.query_str, texts)
        # rank() names plain texts by their positions ("0", "1", …): that finds each node again
        return [
            NodeWithScore(node=nodes[int(c.docid)].node, score=c.score) for c in result.ranking.candidates[: self.top_n]
        ]
