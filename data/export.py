"""Encoders exported once into the cache and run on ONNX Runtime or OpenVINO.

A method hands padded id arrays to an ``EncoderRuntime`` and gets one float32 array per batch: a classifier's
logits, a pooled sentence embedding, SPLADE's max-pooled ``log(1 + relu(logits))``, a T5's first-decoder-step
logits, or ColBERT's projected token embeddings. Pooling runs inside the exported graph, so only what the method
reads leaves the runtime.

An export is keyed by the weights' sha256, the head, the backend, the precision, the calibration sample's
digest and the versions of every library that shaped it, built in a temporary folder and renamed into place (an
interrupted export leaves nothing), and reused after. ``precision="int8"`` quantises it (``data.quantize``):
dynamically on ONNX Runtime without calibration, statically from the user's calibration sample otherwise.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from data.config import cache_dir
from data.first_token import first_token_logits
from data.optional import optional_import
from data.quantize import calibration_digest, quantize_onnx, quantize_openvino

Backend = Literal["torch", "onnx", "openvino"]
Head = Literal["logits", "mean", "cls", "splade", "seq2seq", "colbert"]
EXPORT_FORMAT = 3  # bump when what an export holds changes (2: eager attention; 3: classifiers' first-token last layer)
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class _Pooled:
    """Builds the torch module that is exported: the model plus its pooling, one array out."""

    @staticmethod
    def build(path: str, head: Head) -> Any:
        torch = optional_import("torch")
        transformers = optional_import("transformers")
        if head == "seq2seq":
            return _first_decoder_step(path)

        class Exported(torch.nn.Module):  # type: ignore[name-defined]  # torch is imported lazily
            def __init__(self) -> None:
                super().__init__()
                auto = {
                    "logits": transformers.AutoModelForSequenceClassification,
                    "splade": transformers.AutoModelForMaskedLM,
                }.get(head, transformers.AutoModel)
                # Eager attention exports as MatMul, Softmax, MatMul, which OpenVINO fuses into one attention
                # kernel; the SDPA export's NaN guards (IsNaN, Select) keep the three apart.
                try:
                    self.net = auto.from_pretrained(path, attn_implementation="eager")
                except ValueError:  # a model without an eager attention path
                    self.net = auto.from_pretrained(path)
                self.first_token = first_token_logits(self.net) if head == "logits" else None

            def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any = None) -> Any:
                if self.first_token is not None:
                    return self.first_token(input_ids, attention_mask, token_type_ids)
                kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
                if token_type_ids is not None:
                    kwargs["token_type_ids"] = token_type_ids
                out = self.net(**kwargs)
                mask = attention_mask.unsqueeze(-1).to(torch.float32)
                if head == "logits":
                    return out.logits
                if head == "splade":
                    # log1p(relu(.)) is monotonic: pool the raw logits over real tokens, then transform one
                    # vocabulary-wide row per text instead of one per token.
                    logits = out.logits.masked_fill(attention_mask.unsqueeze(-1) == 0, float("-inf"))
                    return torch.log1p(torch.relu(logits.max(dim=1).values))
                hidden = out.last_hidden_state
                if head == "cls":
                    return hidden[:, 0]
                return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)

        module = Exported().eval()
        for parameter in module.parameters():
            parameter.requires_grad_(False)
        return module


def _first_decoder_step(path: str) -> Any:
    """A T5 (any encoder-decoder) as one graph: the encoder and the first decoder step, the vocabulary's logits out
    (monoT5 and duoT5 read two of them): no generation loop to export."""
    torch = optional_import("torch")
    transformers = optional_import("transformers")

    class FirstStep(torch.nn.Module):  # type: ignore[name-defined]  # torch is imported lazily
        input_names = ("input_ids", "attention_mask")

        def __init__(self) -> None:
            super().__init__()
            self.net = transformers.AutoModelForSeq2SeqLM.from_pretrained(path, attn_implementation="eager")
            start = self.net.config.decoder_start_token_id
            self.start = int(start if start is not None else self.net.config.pad_token_id)

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            start = torch.full((input_ids.shape[0], 1), self.start, dtype=torch.long, device=input_ids.device)
            out = self.net(input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=start, use_cache=False)
            return out.logits[:, 0]

    module = FirstStep().eval()
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    return module


def _digest_folder(path: Path) -> str:
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]:
        digest.update(file.relative_to(path).as_posix().encode() if path.is_dir() else b"")
        with open(file, "rb") as handle:
            while block := handle.read(1 << 22):
                digest.update(block)
    return digest.hexdigest()


def _versions(backend: str) -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    names = ["torch", "transformers", "onnx", "onnxscript"]
    names += ["onnxruntime"] if backend == "onnx" else ["openvino", "nncf"]
    found: dict[str, str | None] = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


@dataclass(frozen=True)
class ExportKey:
    weights: str
    head: str
    backend: str
    precision: str
    calibration: str  # digest of the sample, "" for none
    versions: tuple[tuple[str, str | None], ...]

    def folder(self) -> Path:
        text = json.dumps({**self.__dict__, "format": EXPORT_FORMAT}, sort_keys=True, default=list)
        name = hashlib.sha256(text.encode()).hexdigest()[:20]
        return cache_dir() / "exports" / f"{self.backend}-{self.precision}-{self.head}-{name}"


class EncoderRuntime:
    """A compiled encoder: ``run(input_ids, attention_mask, token_type_ids)`` → one float32 array."""

    def __init__(
        self,
        path: str,
        head: Head,
        backend: Backend,
        precision: str = "float32",
        calibration: Sequence[dict[str, Any]] = (),
        threads: int | None = None,
        module: Callable[[], Any] | None = None,
    ):
        """``module`` builds the torch module to export where the head is not one this module builds (ColBERT's
        projections live with the method); its ``input_names`` are the graph's inputs."""
        if backend == "torch":
            raise ValueError("EncoderRuntime is for onnx and openvino; torch runs in the method itself")
        self.path, self.head, self.backend, self.precision = path, head, backend, precision
        key = ExportKey(
            weights=_digest_folder(Path(path)),
            head=head,
            backend=backend,
            precision=precision,
            calibration=calibration_digest(calibration) if precision == "int8" and calibration else "",
            versions=tuple(sorted(_versions(backend).items())),
        )
        self.folder = key.folder()
        if not (self.folder / "export.json").is_file():
            _export(self.folder, path, head, backend, precision, calibration, key, module)
        self._open(self.folder, threads)

    def _open(self, folder: Path, threads: int | None) -> None:
        meta = json.loads((folder / "export.json").read_text(encoding="utf-8"))
        self.input_names: tuple[str, ...] = tuple(meta["inputs"])
        self._run = _open(folder, self.backend, threads)

    @classmethod
    def from_folder(cls, folder: Path, threads: int | None = None) -> EncoderRuntime:
        """An export kept elsewhere (a dense index keeps the one its documents were encoded with)."""
        meta = json.loads((folder / "export.json").read_text(encoding="utf-8"))
        runtime = cls.__new__(cls)
        runtime.path, runtime.head, runtime.backend, runtime.precision = (
            meta["model"],
            meta["head"],
            meta["backend"],
            meta["precision"],
        )
        runtime.folder = folder
        runtime._open(folder, threads)
        return runtime

    @property
    def uses_token_types(self) -> bool:
        return "token_type_ids" in self.input_names

    def run(self, input_ids: Any, attention_mask: Any, token_type_ids: Any = None) -> Any:
        np = optional_import("numpy")
        feeds = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
        if "token_type_ids" in self.input_names and token_type_ids is None:
            feeds["token_type_ids"] = np.zeros_like(input_ids)
        return self._run({name: np.ascontiguousarray(feeds[name], dtype=np.int64) for name in self.input_names})


def _export(
    folder: Path,
    path: str,
    head: Head,
    backend: str,
    precision: str,
    calibration: Sequence[dict[str, Any]],
    key: ExportKey,
    module: Callable[[], Any] | None = None,
) -> None:
    """Export into a temporary sibling folder, then rename it into place: never a half-built export."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        onnx_file = staging / "model.onnx"
        names = _fp32_onnx(path, head, key, onnx_file, module)
        if backend == "onnx":
            if precision == "int8":
                quantize_onnx(onnx_file, staging / "model.int8.onnx", calibration)
                onnx_file.unlink()
                (staging / "model.int8.onnx").rename(onnx_file)
        else:
            ov = optional_import("openvino")
            model = ov.convert_model(str(onnx_file))
            if precision == "int8":
                model = quantize_openvino(model, calibration)
            ov.save_model(model, str(staging / "model.xml"), compress_to_fp16=False)
            onnx_file.unlink()
        meta = {"inputs": names, "model": path, **{k: v for k, v in key.__dict__.items() if k != "versions"}}
        meta["versions"] = dict(key.versions)
        (staging / "export.json").write_text(json.dumps(meta, indent=2, sort_keys=True), encoding="utf-8")
        try:
            staging.rename(folder)
        except OSError:  # another process finished the same export first
            shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _fp32_onnx(
    path: str, head: Head, key: ExportKey, onnx_file: Path, build: Callable[[], Any] | None = None
) -> list[str]:
    """The model and its head as an fp32 ONNX graph at ``onnx_file``; returns the graph's input names.

    torch's export is most of an export's time, so an int8 or OpenVINO export starts from the ONNX Runtime
    fp32 export of the same weights, head and libraries (``key`` as that export's) when the cache holds it:
    the graph torch would export again.
    """
    import dataclasses
    import inspect

    onnx_versions = tuple(sorted(_versions("onnx").items()))
    fp32 = dataclasses.replace(
        key, backend="onnx", precision="float32", calibration="", versions=onnx_versions
    ).folder()
    if (fp32 / "export.json").is_file() and (fp32 / "model.onnx").is_file():
        shutil.copyfile(fp32 / "model.onnx", onnx_file)
        return list(json.loads((fp32 / "export.json").read_text(encoding="utf-8"))["inputs"])
    torch = optional_import("torch")
    module = build() if build is not None else _Pooled.build(path, head)
    accepted = getattr(module, "input_names", None) or inspect.signature(module.net.forward).parameters
    names = [n for n in _INPUTS if n in accepted]
    example = tuple((torch.zeros if n == "token_type_ids" else torch.ones)(2, 8, dtype=torch.long) for n in names)
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    torch.onnx.export(
        module, example, str(onnx_file), input_names=names, output_names=["output"],
        dynamic_shapes=tuple({0: batch, 1: sequence} for _ in names), dynamo=True, verbose=False,
        external_data=False,
    )  # fmt: skip
    return names


def _open(folder: Path, backend: str, threads: int | None) -> Any:
    if backend == "onnx":
        ort = optional_import("onnxruntime")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = ort.InferenceSession(str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"])
        return lambda feeds: session.run(None, feeds)[0]
    ov = optional_import("openvino")
    core = ov.Core()
    # f32 for what is not quantised: on CPUs with bf16 units OpenVINO would otherwise compute in bf16 (4e-4 off torch).
    config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    compiled = core.compile_model(core.read_model(str(folder / "model.xml")), "CPU", config)
    request = compiled.create_infer_request()

    def run(feeds: dict[str, Any]) -> Any:
        return request.infer(feeds)[compiled.outputs[0]].copy()

    return run


def keep_export(runtime: EncoderRuntime, target: Path) -> None:
    """Copy the export an index was encoded with into it (``target``), replacing any earlier one whole."""
    staging = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(runtime.folder, staging)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)


class LazyRuntime:
    """An export run by a method: built at once, or, for static int8 (``calibration`` > 0), from the first
    ``calibration`` rows of the first batches it is given (``calibrate``), as the model will see them."""

    def __init__(self, path: str, head: Head, backend: Backend, precision: str, calibration: int = 0,
                 threads: int | None = None, module: Callable[[], Any] | None = None):  # fmt: skip
        self._args = (path, head, backend, precision)
        self._calibration, self._threads, self._module = calibration, threads, module
        self.runtime: EncoderRuntime | None = None
        if not (precision == "int8" and calibration):
            self.runtime = EncoderRuntime(path, head, backend, precision, (), threads, module)

    def calibrate(self, batches: Sequence[dict[str, Any]]) -> None:
        if self.runtime is not None:
            return
        sample, rows = [], 0
        for batch in batches:
            if rows >= self._calibration:
                break
            take = min(self._calibration - rows, len(batch["input_ids"]))
            sample.append({name: array[:take] for name, array in batch.items()})
            rows += take
        self.runtime = EncoderRuntime(*self._args, sample, self._threads, self._module)

    def run(self, input_ids: Any, attention_mask: Any, token_type_ids: Any = None) -> Any:
        if self.runtime is None:
            self.calibrate([{"input_ids": input_ids, "attention_mask": attention_mask}])
        assert self.runtime is not None
        return self.runtime.run(input_ids, attention_mask, token_type_ids)
