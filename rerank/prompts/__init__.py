def load_prompt(name: str) -> dict[str, str]:
    """A JSON prompt template shipped in this package (``rankzephyr``, ``first``, ``prp``, …)."""
    import json
    from importlib.resources import files

    path = files(__name__).joinpath(f"{name}.json")
    if not path.is_file():
        shipped = sorted(f.name.removesuffix(".json") for f in files(__name__).iterdir() if f.name.endswith(".json"))
        raise ValueError(f"template must be one of {', '.join(shipped)}, not {name!r}")
    data: dict[str, str] = json.loads(path.read_text(encoding="utf-8"))
    return data


def load_text(name: str) -> str:
    """A plain-text prompt template shipped in this package (``pointwise_yes_no``)."""
    from importlib.resources import files

    return files(__name__).joinpath(f"{name}.txt").read_text(encoding="utf-8")
