"""Text-line recognisers for the OCV tool, behind one small interface.

Only recognition lives here: the OCV tool locates the printed block from the decoded code
and cuts it into line images itself, so no text-detection network runs on the line and
never on the whole frame. Each engine returns, per line, the text and one confidence per
character, so a reject can say which character was doubtful.

* `paddle` (the default): the PP-OCRv4 recognition network that `rapidocr-onnxruntime`
  ships inside its wheel, run on ONNX Runtime (already the line's runtime). Nothing is
  downloaded at run time. The CTC decoding is our own so that it can be restricted to the
  characters a field may contain (digits, capitals, the few separators of the printed
  formats): a read can then never be a look-alike outside the alphabet.
* `tesseract`: Debian's tesseract-ocr 5 through pytesseract, kept for comparison
  (`bench/ocv.py` runs both on the same items). One process per call, so it is slow; it
  gives word confidences only, spread over each word's characters.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Protocol

import cv2
import numpy as np

#: What a printed human-readable block may contain (GS1 AI values are upper case, digits
#: and a few separators; the labels are the printed prefixes).
DEFAULT_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ()/-.:"


class OcrUnavailable(RuntimeError):
    """The chosen engine is not installed here (reported when the recipe is loaded)."""


@dataclass
class LineRead:
    text: str
    conf: list[float] = field(default_factory=list)  # one per character of `text`

    @property
    def min_conf(self) -> float:
        return min(self.conf) if self.conf else 0.0


class Recognizer(Protocol):
    name: str

    def read_lines(
        self, lines: list[np.ndarray], alphabets: list[str] | None = None
    ) -> list[LineRead]:
        """Grey uint8 line images (dark text on light) -> one read per line; `alphabets`
        (one per line) restricts what each line may read as."""
        ...


# --------------------------------------------------------------------------- PP-OCR


def _paddle_model() -> Path:
    try:
        import rapidocr_onnxruntime
    except ImportError as exc:
        raise OcrUnavailable(
            "the 'paddle' OCR engine needs rapidocr-onnxruntime (its wheel carries the model)"
        ) from exc
    path = Path(rapidocr_onnxruntime.__file__).parent / "models" / "ch_PP-OCRv4_rec_infer.onnx"
    if not path.is_file():
        raise OcrUnavailable(f"PP-OCR recognition model missing: {path}")
    return path


class PaddleRecognizer:
    """PP-OCRv4 line recognition on ONNX Runtime with an alphabet-restricted CTC decode."""

    name: ClassVar[str] = "paddle"
    HEIGHT: ClassVar[int] = 48

    def __init__(self, alphabet: str = DEFAULT_ALPHABET, threads: int = 1):
        import onnx
        import onnxruntime as ort
        from onnx import numpy_helper

        model = onnx.load(str(_paddle_model()))
        meta = {p.key: p.value for p in model.metadata_props}
        chars = ["<blank>", *meta["character"].splitlines(), " "]
        allowed = set(alphabet)
        keep = [0] + [i for i, c in enumerate(chars) if c in allowed]
        missing = allowed - {chars[i] for i in keep[1:]}
        if missing:
            raise OcrUnavailable(f"characters {sorted(missing)} unknown to the PP-OCR model")
        self.chars = [chars[i] for i in keep]
        # The classifier's last layer is cut to the alphabet in memory (the file is not
        # touched): the softmax over the kept classes is exactly the full softmax
        # renormalised over them, and the 6,625-class projection was a large share of the
        # network's time.
        last = model.graph.node[-1]
        add = next(n for n in model.graph.node if n.output[0] == last.input[0])
        mm = next(n for n in model.graph.node if n.output[0] == add.input[0])
        consts = {n.output[0]: n for n in model.graph.node if n.op_type == "Constant"}
        idx = np.array(keep, np.int64)
        for name, cut in ((mm.input[1], lambda a: a[:, idx]), (add.input[1], lambda a: a[idx])):
            attr = next(a for a in consts[name].attribute if a.name == "value")
            arr = cut(numpy_helper.to_array(attr.t))
            attr.t.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(arr), name))
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(
            model.SerializeToString(), opts, providers=["CPUExecutionProvider"]
        )
        self.input = self.session.get_inputs()[0].name
        self._lock = threading.Lock()  # one run at a time per session keeps the thread count

    def _batch(self, lines: list[np.ndarray]) -> np.ndarray:
        h = self.HEIGHT
        # widths as the network's 48-px input would have them: at 32 px high the characters
        # are stretched sideways, which keeps enough CTC steps (one per 8 columns) per character
        widths = [max(8, math.ceil(48 * ln.shape[1] / max(1, ln.shape[0]))) for ln in lines]
        wmax = max(widths)
        wmax = max(64, int(math.ceil(wmax / 8.0)) * 8)
        out = np.zeros((len(lines), 3, h, wmax), np.float32)
        for k, (ln, w) in enumerate(zip(lines, widths, strict=True)):
            g = cv2.resize(ln, (min(w, wmax), h), interpolation=cv2.INTER_LINEAR)
            x = g.astype(np.float32) / 127.5 - 1.0
            out[k, :, :, : g.shape[1]] = x[None]
            # PP-OCR pads with zeros (mid grey after normalisation), as rapidocr does
        return out

    def read_lines(
        self, lines: list[np.ndarray], alphabets: list[str] | None = None
    ) -> list[LineRead]:
        if not lines:
            return []
        batch = self._batch(lines)
        with self._lock:
            probs = self.session.run(None, {self.input: batch})[0]  # N x T x len(alphabet)+1
        if alphabets is not None:  # each line only what its field may contain
            for k, a in enumerate(alphabets):
                mask = np.array([c == "<blank>" or c in a for c in self.chars])
                probs[k, :, ~mask] = 0.0
            probs = probs / np.maximum(probs.sum(axis=2, keepdims=True), 1e-9)
        best = probs.argmax(axis=2)
        out = []
        for k in range(len(lines)):
            idx, p = best[k], probs[k, np.arange(probs.shape[1]), best[k]]
            text, conf, prev = [], [], 0
            for t, j in enumerate(idx):
                if j != 0 and j != prev:
                    text.append(self.chars[j])
                    conf.append(float(p[t]))
                elif j != 0 and conf:  # the same character over several steps
                    conf[-1] = max(conf[-1], float(p[t]))
                prev = j
            out.append(LineRead("".join(text), conf))
        return out


# --------------------------------------------------------------------------- tesseract


class TesseractRecognizer:
    """Debian's tesseract (LSTM) through pytesseract, one line per call (`--psm 7`)."""

    name: ClassVar[str] = "tesseract"

    def __init__(self, alphabet: str = DEFAULT_ALPHABET, threads: int = 1):
        try:
            import pytesseract
        except ImportError as exc:
            raise OcrUnavailable("the 'tesseract' OCR engine needs pytesseract") from exc
        try:
            pytesseract.get_tesseract_version()
        except Exception as exc:
            raise OcrUnavailable(f"tesseract is not installed: {exc}") from exc
        self.tess = pytesseract
        wl = alphabet.replace(" ", "")
        self.config = f"--psm 7 --oem 1 -c tessedit_char_whitelist={wl}"

    def read_lines(
        self, lines: list[np.ndarray], alphabets: list[str] | None = None
    ) -> list[LineRead]:
        out = []
        for k, ln in enumerate(lines):
            # tesseract wants text some 30 px high and a white border around it
            s = max(1.0, 32.0 / max(1, ln.shape[0]))
            g = cv2.resize(ln, None, fx=s, fy=s, interpolation=cv2.INTER_CUBIC) if s > 1 else ln
            g = cv2.copyMakeBorder(g, 10, 10, 10, 10, cv2.BORDER_REPLICATE)
            cfg = self.config
            if alphabets is not None:
                cfg = cfg.split(" -c ")[0] + " -c tessedit_char_whitelist=" + alphabets[k]
            d = self.tess.image_to_data(g, config=cfg, output_type=self.tess.Output.DICT)
            words, conf = [], []
            for w, c in zip(d["text"], d["conf"], strict=True):
                w = (w or "").strip()
                if not w:
                    continue
                cf = max(0.0, float(c)) / 100.0
                if words:
                    words.append(" ")
                    conf.append(cf)
                words.append(w)
                conf.extend([cf] * len(w))
            out.append(LineRead("".join(words), conf))
        return out


ENGINES: dict[str, type] = {"paddle": PaddleRecognizer, "tesseract": TesseractRecognizer}

_shared: dict[tuple[str, str, int], Recognizer] = {}
_shared_lock = threading.Lock()


def recognizer(engine: str, alphabet: str = DEFAULT_ALPHABET, threads: int = 1) -> Recognizer:
    """One recognizer per (engine, alphabet, threads) in the process (the model loads once)."""
    if engine not in ENGINES:
        raise OcrUnavailable(f"unknown OCR engine {engine!r} (known: {sorted(ENGINES)})")
    key = (engine, alphabet, threads)
    with _shared_lock:
        if key not in _shared:
            _shared[key] = ENGINES[engine](alphabet, threads)
        return _shared[key]
