"""The plain rerank server a user would write: FastAPI calling the model once per request (no batching).

    python benchmarks/plain_server.py --kind cross-encoder|bi-encoder --model DIR --port 8001

The reference (b) of benchmarks/serve.py. POST /rerank {query, documents} -> {results: [{index, relevance_score}]}.
"""

from __future__ import annotations

import argparse

import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel


class Body(BaseModel):
    query: str
    documents: list[str]
    model: str | None = None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kind", choices=("cross-encoder", "bi-encoder"), required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = FastAPI()
    if args.kind == "cross-encoder":
        from sentence_transformers import CrossEncoder

        model = CrossEncoder(args.model, max_length=512)

        def scores(body: Body) -> list[float]:
            return [float(s) for s in model.predict([(body.query, d) for d in body.documents], batch_size=32)]
    else:
        from sentence_transformers import SentenceTransformer

        encoder = SentenceTransformer(args.model)

        def scores(body: Body) -> list[float]:
            q = encoder.encode([body.query], normalize_embeddings=True)
            d = encoder.encode(body.documents, normalize_embeddings=True, batch_size=32)
            return [float(s) for s in (d @ q[0])]

    @app.post("/rerank")
    def rerank(body: Body) -> dict:
        values = scores(body)
        order = sorted(range(len(values)), key=lambda i: -values[i])
        return {"results": [{"index": i, "relevance_score": values[i]} for i in order]}

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
