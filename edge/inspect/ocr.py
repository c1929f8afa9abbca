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

The engines' libraries (ONNX Runtime, OpenCV, pytesseract) are imported when an engine is
made: validating a recipe reads the default alphabet and asks `missing` whether an engine
can run here, without them.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Protocol

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
    #: per-step class probabilities (CTC engines) and the class of each character, so that
    #: an expected string can be aligned to what the network saw (`support`)
    probs: np.ndarray | None = None
    classes: dict[str, int] | None = None

    @property
    def min_conf(self) -> float:
        return min(self.conf) if self.conf else 0.0

    def support(self, expected: str) -> list[float] | None:
        """How strongly the image shows each character of `expected` (spaces ignored).

        The best CTC alignment (Viterbi) of `expected` to the network's steps; each
        character's support is its highest probability over the steps aligned to it. A
        character the print lacks, or that reads as another, gets a low support; a clean
        print of exactly `expected` gets high support everywhere. None: the engine gives no
        step probabilities, or a character is outside the line's alphabet.
        """
        if self.probs is None or self.classes is None:
            return None
        want = expected.replace(" ", "")
        try:
            lab = [self.classes[c] for c in want]
        except KeyError:
            return None
        return ctc_support(self.probs, lab)


def ctc_support(probs: np.ndarray, labels: list[int]) -> list[float]:
    """Per-label support of the best CTC path of `labels` (blank = class 0) through `probs`."""
    n = len(labels)
    if n == 0:
        return []
    steps = probs.shape[0]
    ext = np.zeros(2 * n + 1, np.int64)
    ext[1::2] = labels
    lp = np.log(np.maximum(probs[:, ext], 1e-12))  # T x S
    s_len = len(ext)
    # a label state may skip the blank before it unless it repeats the previous label
    skip = np.zeros(s_len, bool)
    for k in range(1, n):
        skip[2 * k + 1] = labels[k] != labels[k - 1]
    neg = -1e30
    score = np.full(s_len, neg)
    score[0], score[1] = lp[0, 0], lp[0, 1]
    back = np.zeros((steps, s_len), np.int8)  # 0 stay, 1 from s-1, 2 from s-2
    for t in range(1, steps):
        stay = score
        one = np.concatenate(([neg], score[:-1]))
        two = np.where(skip, np.concatenate(([neg, neg], score[:-2])), neg)
        choice = np.argmax(np.stack([stay, one, two]), axis=0)
        score = np.choose(choice, [stay, one, two]) + lp[t]
        back[t] = choice
    end = s_len - 1 if score[-1] >= score[-2] else s_len - 2
    if score[end] <= neg / 2:  # too few steps for the string: it cannot be there
        return [0.0] * n
    best = np.zeros(n)
    s = end
    for t in range(steps - 1, -1, -1):
        if s % 2 == 1:
            k = s // 2
            best[k] = max(best[k], float(np.exp(lp[t, s])))
        s -= int(back[t, s])
    return [round(float(v), 4) for v in best]


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
    """The recognition model inside the installed rapidocr-onnxruntime wheel (found, not
    imported: the package's own pipeline is not used)."""
    import importlib.util

    spec = importlib.util.find_spec("rapidocr_onnxruntime")
    if spec is None or not spec.origin:
        raise OcrUnavailable(
            "the 'paddle' OCR engine needs rapidocr-onnxruntime (its wheel carries the model): "
            "pip install 'edge-inspect[ocr]'"
        )
    path = Path(spec.origin).parent / "models" / "ch_PP-OCRv4_rec_infer.onnx"
    if not path.is_file():
        raise OcrUnavailable(f"PP-OCR recognition model missing: {path}")
    return path


def _simplify(graph) -> int:
    """Fold PP-OCRv4's per-block scalar affines into its convolutions, and its HardSwish
    (exported as Add, Clip, Mul, Div) into HardSigmoid and Mul; returns the nodes removed.

    The exported network spends over a third of its time in these element-wise steps around
    each convolution (`bench/ocv.py` measures the tool before and after). The rewrite is
    exact algebra: `a * conv(x) + b` is a convolution with weights `a W` and bias `a c + b`;
    `c * y + d` feeding a convolution without padding folds into its weights and bias (with
    padding, only `c` folds and `d / c` stays an addition, as the zero border must stay zero).
    """
    from onnx import helper, numpy_helper

    consts = {n.output[0]: n for n in graph.node if n.op_type == "Constant"}
    users: dict[str, list] = {}
    for n in graph.node:
        for i in n.input:
            users.setdefault(i, []).append(n)

    def value(name: str) -> np.ndarray | None:
        n = consts.get(name)
        return None if n is None else numpy_helper.to_array(n.attribute[0].t)

    def put(name: str, arr: np.ndarray) -> None:
        t = numpy_helper.from_array(np.ascontiguousarray(arr.astype(np.float32)), name)
        consts[name].attribute[0].t.CopyFrom(t)

    def scalar_op(n, op: str) -> tuple[float, str] | None:
        """(constant, other input) of a Mul/Add/Div by a one-element constant."""
        if n.op_type != op or len(n.input) != 2:
            return None
        for k in (0, 1):
            v = value(n.input[k])
            if v is not None and v.size == 1 and len(users.get(n.input[k], [])) == 1:
                if op == "Div" and k == 0:
                    return None
                return float(v.ravel()[0]), n.input[1 - k]
        return None

    def only_user(name: str):
        u = users.get(name, [])
        return u[0] if len(u) == 1 and name not in {o.name for o in graph.output} else None

    drop: set[int] = set()
    rename: dict[str, str] = {}
    for conv in [n for n in graph.node if n.op_type == "Conv"]:
        w = value(conv.input[1])
        if w is None or len(users[conv.input[1]]) != 1:
            continue
        # a * conv(x) + b after the convolution
        mul = only_user(conv.output[0])
        add = only_user(mul.output[0]) if mul is not None else None
        sm = scalar_op(mul, "Mul") if mul is not None else None
        sa = scalar_op(add, "Add") if add is not None else None
        if sm and sa and len(conv.input) == 3 and len(users[conv.input[2]]) == 1:
            a, b = sm[0], sa[0]
            put(conv.input[1], w * a)
            put(conv.input[2], value(conv.input[2]) * a + b)
            rename[add.output[0]] = conv.output[0]
            drop.update((id(mul), id(add)))
        # conv(c * y + d) before the convolution
        add = next((n for n in graph.node if conv.input[0] in n.output), None)
        sa = scalar_op(add, "Add") if add is not None and only_user(add.output[0]) is conv else None
        mul = next((n for n in graph.node if sa and sa[1] in n.output), None)
        sm = scalar_op(mul, "Mul") if mul is not None and only_user(mul.output[0]) is add else None
        if add is not None and mul is not None and {id(add), id(mul)} & drop:
            sm = None
        if sm and sm[0] != 0.0 and len(conv.input) == 3 and len(users[conv.input[2]]) == 1:
            c, d = sm[0], sa[0]
            w = value(conv.input[1])
            pads = next((list(a.ints) for a in conv.attribute if a.name == "pads"), [0])
            put(conv.input[1], w * c)
            if any(pads):  # the zero border: keep the shift as an addition, before the scale
                put(add.input[0] if add.input[0] in consts else add.input[1], np.float32([d / c]))
                add.input[:] = [sm[1] if i == mul.output[0] else i for i in add.input]
                drop.add(id(mul))
            else:
                bias = value(conv.input[2]) + d * w.sum(axis=(1, 2, 3))
                put(conv.input[2], bias)
                rename[add.output[0]] = sm[1]
                drop.update((id(mul), id(add)))
    # HardSwish: y = x * clip(x + 3, 0, 6) / 6  ->  x * HardSigmoid(x; 1/6, 1/2)
    new_nodes = []
    for n in graph.node:
        if id(n) in drop:
            continue
        sa = scalar_op(n, "Add")
        clip = only_user(n.output[0]) if sa and sa[0] == 3.0 else None
        if clip is not None and clip.op_type == "Clip":
            lo, hi = value(clip.input[1]), value(clip.input[2])
            mul = only_user(clip.output[0])
            div = only_user(mul.output[0]) if mul is not None and mul.op_type == "Mul" else None
            sd = scalar_op(div, "Div") if div is not None else None
            if (
                lo is not None
                and hi is not None
                and float(lo) == 0.0
                and float(hi) == 6.0
                and sd
                and sd[0] == 6.0
                and set(mul.input) == {sa[1], clip.output[0]}
            ):
                hs = helper.make_node(
                    "HardSigmoid", [sa[1]], [n.output[0]], alpha=1.0 / 6.0, beta=0.5
                )
                mul.input[:] = [sa[1], n.output[0]]
                rename[div.output[0]] = mul.output[0]
                drop.update((id(clip), id(div)))
                new_nodes.append(hs)
                continue
        new_nodes.append(n)
    kept = [n for n in new_nodes if id(n) not in drop]
    removed = len(graph.node) - len(kept)

    def final(name: str) -> str:  # a renamed name may itself have been renamed
        while name in rename:
            name = rename[name]
        return name

    for n in kept:
        n.input[:] = [final(i) for i in n.input]
    for o in graph.output:
        if o.name in rename:  # never: outputs are excluded above
            raise AssertionError(o.name)
    del graph.node[:]
    graph.node.extend(kept)
    return removed


#: how the lines of one item go through the recognition network (`PaddleRecognizer.runs`)
RUNS = ("lines", "batch", "concat")
#: input columns per output step of the PP-OCRv4 recognition network
_STEP = 8


class PaddleRecognizer:
    """PP-OCRv4 line recognition on ONNX Runtime with an alphabet-restricted CTC decode."""

    name: ClassVar[str] = "paddle"

    def __init__(
        self,
        alphabet: str = DEFAULT_ALPHABET,
        threads: int = 1,
        height: int = 48,
        stretch: float = 1.0,
        simplify: bool = True,
        runs: str = "lines",
    ):
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
        self.classes = {c: i for i, c in enumerate(self.chars) if i > 0}
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
        if simplify:
            _simplify(model.graph)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(
            model.SerializeToString(), opts, providers=["CPUExecutionProvider"]
        )
        self.input = self.session.get_inputs()[0].name
        self._masks: dict[str, np.ndarray] = {}
        self.height, self.stretch = height, stretch
        if runs not in RUNS:
            raise ValueError(f"runs {runs!r}: one of {RUNS}")
        self.runs = runs

    def _input(self, line: np.ndarray) -> np.ndarray:
        """One line as the network takes it: `height` rows, the width in proportion
        (times `stretch`), values in -1..1, no padding (one run per line)."""
        import cv2  # here, not at the top: the OCV tool's parameters read this module

        h = self.height
        w = max(16, math.ceil(self.stretch * h * line.shape[1] / max(1, line.shape[0])))
        g = cv2.resize(
            line, (w, h), interpolation=cv2.INTER_AREA if w < line.shape[1] else cv2.INTER_LINEAR
        )
        x = g.astype(np.float32) / 127.5 - 1.0
        return np.ascontiguousarray(np.broadcast_to(x[None, None], (1, 3, h, w)))

    def _steps(self, lines: list[np.ndarray]) -> list[np.ndarray]:
        """Each line's step probabilities (T x C), from one run per line or one run in all.

        `batch`: the lines padded with paper (their last column) to the widest, one run of N;
        `concat`: the lines side by side, each padded to whole steps (8 columns), one run of
        one long line, cut back into lines at the step boundaries. The lines carry paper on
        both sides (the OCV tool's `side_margin`), so a line's steps see little of the next.
        """
        # no lock: with one intra-op thread a run stays on its caller's thread, so the
        # line's workers read their items' text at once (a lock made them queue)
        xs = [self._input(line) for line in lines]
        if self.runs == "lines" or len(xs) < 2:
            return [self.session.run(None, {self.input: x})[0][0] for x in xs]
        step = _STEP
        if self.runs == "batch":
            wide = max(x.shape[3] for x in xs)
            wide += -wide % step
            x = np.concatenate(
                [np.pad(x, ((0, 0), (0, 0), (0, 0), (0, wide - x.shape[3])), "edge") for x in xs]
            )
            probs = self.session.run(None, {self.input: x})[0]
            return [probs[k, : math.ceil(xk.shape[3] / step)] for k, xk in enumerate(xs)]
        padded = [np.pad(x, ((0, 0), (0, 0), (0, 0), (0, -x.shape[3] % step)), "edge") for x in xs]
        probs = self.session.run(None, {self.input: np.concatenate(padded, axis=3)})[0][0]
        out, t = [], 0
        for x in padded:
            n = x.shape[3] // step
            out.append(probs[t : t + n])
            t += n
        return out

    def read_lines(
        self, lines: list[np.ndarray], alphabets: list[str] | None = None
    ) -> list[LineRead]:
        out = []
        for k, probs in enumerate(self._steps(lines)):
            if alphabets is not None:  # only what this line's field may contain
                probs = probs * self._mask(alphabets[k])[None, :]
                probs = probs / np.maximum(probs.sum(axis=1, keepdims=True), 1e-9)
            out.append(self._decode(probs))
        return out

    def _mask(self, alphabet: str) -> np.ndarray:
        m = self._masks.get(alphabet)
        if m is None:
            m = np.array([c == "<blank>" or c in alphabet for c in self.chars], np.float32)
            self._masks[alphabet] = m
        return m

    def _decode(self, probs: np.ndarray) -> LineRead:
        """Greedy CTC: the best class per step, repeats merged, blanks dropped; a
        character's confidence is its best step's probability."""
        best = probs.argmax(axis=1)
        p = probs[np.arange(len(best)), best]
        text: list[str] = []
        conf: list[float] = []
        prev = 0
        for t, j in enumerate(best):
            if j != 0 and j != prev:
                text.append(self.chars[j])
                conf.append(float(p[t]))
            elif j != 0 and conf:  # the same character over several steps
                conf[-1] = max(conf[-1], float(p[t]))
            prev = j
        return LineRead("".join(text), conf, probs, self.classes)


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
        import cv2

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


def missing(engine: str) -> str | None:
    """Why `engine` cannot run here (checked when a recipe is validated), or None."""
    import importlib.util
    import shutil

    if engine == "paddle":
        try:
            _paddle_model()
        except OcrUnavailable as exc:
            return str(exc)
        return None
    if engine == "tesseract":
        if importlib.util.find_spec("pytesseract") is None:
            return "the 'tesseract' OCR engine needs pytesseract"
        if shutil.which("tesseract") is None:
            return "the 'tesseract' OCR engine needs Debian's tesseract-ocr"
        return None
    return f"unknown OCR engine {engine!r}"


ENGINES: dict[str, type] = {"paddle": PaddleRecognizer, "tesseract": TesseractRecognizer}

_shared: dict[tuple[str, str, int, int, float], Recognizer] = {}
_shared_lock = threading.Lock()


def recognizer(
    engine: str,
    alphabet: str = DEFAULT_ALPHABET,
    threads: int = 1,
    height: int = 48,
    stretch: float = 1.0,
    runs: str = "lines",
) -> Recognizer:
    """One recognizer per (engine, alphabet, threads, height, stretch, runs) in the process
    (the model loads once); `height` and `stretch` shape the lines the CTC engine is fed (a
    condensed inkjet font reads better widened), `runs` how an item's lines go through it
    (tesseract ignores the three)."""
    if engine not in ENGINES:
        raise OcrUnavailable(f"unknown OCR engine {engine!r} (known: {sorted(ENGINES)})")
    paddle = engine == "paddle"
    key = (
        engine,
        alphabet,
        threads,
        height if paddle else 0,
        stretch if paddle else 1.0,
        runs if paddle else "lines",
    )
    with _shared_lock:
        if key not in _shared:
            kw = {"height": height, "stretch": stretch, "runs": runs} if paddle else {}
            _shared[key] = ENGINES[engine](alphabet, threads, **kw)
        return _shared[key]
