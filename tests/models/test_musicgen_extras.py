"""Beyond Audiocraft: per-call seeds, cancel, streaming audio, long-form schedules, tokens files."""
import time

import pytest
import torch

from audiocraft.models import MusicGen, crossfade as _crossfade
from audiocraft.utils.cancel import CancelToken
from audiocraft.utils.tokens_io import load_tokens, save_tokens
from tests.conftest import load_golden

TEXTS = ["80s pop track with bassy drums and synth", "A calm piano ballad, 90 BPM!"]


@pytest.fixture(scope="module")
def small():
    model = MusicGen.get_pretrained("facebook/musicgen-small", device="cpu")
    yield model


@pytest.fixture(autouse=True)
def _reset(small):
    small.set_custom_progress_callback(None)
    small.set_generation_params(duration=0.4)
    yield
    small.set_custom_progress_callback(None)


def test_seed_reproducible_and_distinct(small):
    _, a = small.generate(TEXTS, return_tokens=True, seed=7)
    _, b = small.generate(TEXTS, return_tokens=True, seed=7)
    _, c = small.generate(TEXTS, return_tokens=True, seed=8)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    # seed s gives item i the seed s + i: item 1 of seed 7 == item 0 of seed 8 only if texts equal; use lists.
    _, d = small.generate([TEXTS[1]], return_tokens=True, seed=[8])
    _, e = small.generate([TEXTS[1], TEXTS[1]], return_tokens=True, seed=[8, 3])
    assert torch.equal(d[0], e[0])


def test_seed_item_independent_of_batch(small):
    """The same seed gives the same item alone or next to a longer text (its padding is masked)."""
    short = "drums"
    _, alone = small.generate([short], return_tokens=True, seed=[11])
    _, batched = small.generate([TEXTS[0], short], return_tokens=True, seed=[5, 11])
    assert torch.equal(alone[0], batched[1])


def test_default_path_unchanged_by_global_seed(small):
    g = load_golden("generate_sampling_topk")
    small.set_generation_params(**g["meta"]["set_generation_params"])
    torch.manual_seed(g["meta"]["torch.manual_seed_right_before_call"])
    _, tokens = small.generate(g["meta"]["texts"], return_tokens=True)
    assert torch.equal(tokens, g["tokens"])


def test_bad_seed(small):
    with pytest.raises(ValueError, match="seed has 1 items but the batch has 2"):
        small.generate(TEXTS, seed=[1])
    with pytest.raises(TypeError, match="seed must be None, an int"):
        small.generate(TEXTS, seed="1")
    with pytest.raises(TypeError, match="cancel must be a CancelToken"):
        small.generate(TEXTS, cancel=True)


def test_cancel_token_returns_partial_and_model_stays_clean(small):
    token = CancelToken()
    steps = []

    def progress(done, total):
        steps.append(done)
        if done == 8:
            token.cancel()

    small.set_custom_progress_callback(progress)
    audio, tokens = small.generate(TEXTS, return_tokens=True, cancel=token)
    assert steps[-1] == 8
    assert 0 < tokens.shape[-1] < 20
    assert audio.shape[-1] == tokens.shape[-1] * 640
    _assert_still_golden(small)


def _assert_still_golden(small):
    """After an interrupted call: with the callback removed, greedy generation gives the official tokens."""
    small.set_custom_progress_callback(None)
    g = load_golden("generate_greedy")
    small.set_generation_params(**g["meta"]["set_generation_params"])
    _, tokens = small.generate(g["meta"]["texts"], return_tokens=True)
    assert torch.equal(tokens, g["tokens"])


def test_callback_returning_false_stops(small):
    small.set_custom_progress_callback(lambda done, total: done < 3)
    _, tokens = small.generate(TEXTS, return_tokens=True)
    assert tokens.shape[-1] == 0  # no frame has all 4 codebooks after 3 steps


def test_exception_in_callback_leaves_model_usable(small):
    def boom(done, total):
        if done == 4:
            raise KeyboardInterrupt

    small.set_custom_progress_callback(boom)
    with pytest.raises(KeyboardInterrupt):
        small.generate(TEXTS)
    _assert_still_golden(small)


def test_stream_equals_generate_and_arrives_early(small):
    small.set_generation_params(use_sampling=False, duration=1.0)
    audio, tokens = small.generate(TEXTS, return_tokens=True)
    steps = []
    small.set_custom_progress_callback(lambda done, total: steps.append((time.perf_counter(), done)))
    chunks, first_step_seen = [], None
    for chunk in small.generate_stream(TEXTS, chunk_seconds=0.25):
        if first_step_seen is None:
            first_step_seen = steps[-1][1]
        chunks.append(chunk)
    streamed = torch.cat(chunks, dim=-1)
    assert streamed.shape == audio.shape
    assert (streamed - audio).abs().max() < 1e-4
    assert all(c.shape[-1] == 8000 for c in chunks[:-1])
    total = steps[-1][1]
    assert first_step_seen < total * 0.6  # the first audio came while generation was still running


def test_stream_decodes_once_per_chunk_as_soon_as_it_is_complete(small, monkeypatch):
    """0.25 s chunks = 8000 samples; the codec returns 640 samples per frame minus its 2402-sample look-ahead:
    chunk k needs ceil((8000 k + 2402) / 640) frames: 17, 29, 42, then the flush (1 s = 50 frames). Before the first
    chunk, frames are decoded by quarter chunks (3 frames) to leave little to decode when its last frame comes."""
    small.set_generation_params(use_sampling=False, duration=1.0)
    codec = small.compression_model
    blocks = []
    decode = codec.decode
    monkeypatch.setattr(codec, "decode", lambda codes, scale=None: blocks.append(codes.shape[-1]) or decode(codes))
    chunks = list(small.generate_stream(TEXTS, chunk_seconds=0.25))
    assert blocks == [3, 3, 3, 3, 3, 2, 12, 13, 8]
    assert [c.shape[-1] for c in chunks] == [8000] * 4


def test_stream_first_chunk_shorter(small, monkeypatch):
    """first_chunk_seconds=0.125 (4000 samples) before 0.25 s chunks: the first chunk needs ceil((4000 + 2402) /
    640) = 11 frames, decoded by quarter first chunks (2 frames) as they come; then chunks end at 12000, 20000,
    28000 samples (23, 36, 48 frames); the flush gives the rest of the 1 s. Same audio as generate."""
    small.set_generation_params(use_sampling=False, duration=1.0)
    audio = small.generate(TEXTS)
    codec = small.compression_model
    blocks = []
    decode = codec.decode
    monkeypatch.setattr(codec, "decode", lambda codes, scale=None: blocks.append(codes.shape[-1]) or decode(codes))
    chunks = list(small.generate_stream(TEXTS, chunk_seconds=0.25, first_chunk_seconds=0.125))
    assert [c.shape[-1] for c in chunks] == [4000, 8000, 8000, 8000, 4000]
    assert blocks == [2, 2, 2, 2, 2, 1, 12, 13, 12, 2]
    assert (torch.cat(chunks, dim=-1) - audio).abs().max() < 1e-4


def test_stream_bad_first_chunk(small):
    from audiocraft.utils.validation import ArgumentError
    with pytest.raises(ArgumentError, match="first_chunk_seconds"):
        small.generate_stream(TEXTS, first_chunk_seconds=0.0)


def test_stream_continuation_includes_prompt(small):
    g = load_golden("generate_continuation")
    small.set_generation_params(**g["meta"]["set_generation_params"])
    audio, tokens = small.generate_continuation(g["prompt_wav"], g["meta"]["prompt_sr"], g["meta"]["descriptions"],
                                                return_tokens=True)
    streamed = torch.cat(list(small.generate_stream(g["meta"]["descriptions"], prompt=g["prompt_wav"],
                                                    prompt_sample_rate=g["meta"]["prompt_sr"])), dim=-1)
    assert torch.equal(tokens, g["tokens"])
    assert (streamed - audio).abs().max() < 1e-4


def test_stream_break_cancels(small):
    small.set_generation_params(use_sampling=False, duration=2.0)
    steps = []
    small.set_custom_progress_callback(lambda done, total: steps.append((done, total)))
    stream = small.generate_stream(["x"], chunk_seconds=0.1)
    next(stream)
    stream.close()
    assert steps[-1][0] < steps[-1][1]


def test_long_form_schedule(small):
    g = load_golden("generate_extend")
    old = small.max_duration
    small.max_duration = g["meta"]["max_duration_override"]
    try:
        small.set_generation_params(**g["meta"]["set_generation_params"])
        # the same description everywhere == plain extended generation (the official golden)
        _, same = small.generate_long([(0.0, g["meta"]["texts"])], return_tokens=True)
        assert torch.equal(same, g["tokens"])
        # a change at 0.9 s: the first window (content from 0 s) is unchanged, later ones differ
        calls = []
        small.set_custom_progress_callback(lambda done, total: calls.append((done, total)))
        _, changed = small.generate_long([(0.0, g["meta"]["texts"]), (0.9, ["ambient drone", None])],
                                         return_tokens=True)
        assert torch.equal(changed[..., :50], g["tokens"][..., :50])
        assert not torch.equal(changed, g["tokens"])
        assert [d for d, _ in calls] == list(range(1, calls[-1][1] + 1))
    finally:
        small.max_duration = old


@pytest.mark.parametrize("sampling", [False, True])
def test_long_form_crossfade(small, sampling):
    """A crossfade at a schedule change: same tokens as without it (its extra generation draws from saved random
    streams), audio equal to the tokens' decoding except over the crossfade, where it fades from the previous
    description's continuation into the new one."""
    g = load_golden("generate_extend")
    old = small.max_duration
    small.max_duration = g["meta"]["max_duration_override"]  # 1 s windows, 0.5 s stride: window 1 starts at 1 s
    try:
        small.set_generation_params(**{**g["meta"]["set_generation_params"], "use_sampling": sampling})
        schedule = [(0.0, g["meta"]["texts"]), (0.9, ["ambient drone", None])]
        plain, tokens = small.generate_long(schedule, return_tokens=True, seed=5)
        faded, same = small.generate_long(schedule, return_tokens=True, seed=5, crossfade=0.2)
        assert torch.equal(same, tokens)
        assert torch.equal(plain, small.generate_audio(tokens))
        hop = small.sample_rate // small.frame_rate
        start, end = 50 * hop, 60 * hop  # frames 50 .. 59: the first 0.2 s of the window whose text changed
        assert torch.equal(faded[..., :start], plain[..., :start]) and torch.equal(faded[..., end:], plain[..., end:])
        diff = (faded[..., start:end] - plain[..., start:end]).abs().amax(dim=(0, 1))
        assert diff[:hop].max() > 0 and diff[-hop // 4:].max() < diff[:hop].max()  # faded in towards the new one
        # the blend is (1 - w) * old + w * new with raised-cosine weights rising from 0 to 1
        w = _crossfade.fade_in(end - start, plain.device)
        half = (end - start) // 2  # where 1 - w >= 0.5: the other continuation read back is audio-like
        old_audio = (faded[..., start:start + half] - w[:half] * plain[..., start:start + half]) / (1 - w[:half])
        assert float(w[0]) < 1e-4 and float(w[-1]) > 1 - 1e-4 and bool((w[1:] >= w[:-1]).all())
        assert 0 < old_audio.abs().max() < 10 * plain.abs().max()
        # with global RNG (no seed) too: the extra generation leaves the global stream as it was
        torch.manual_seed(11)
        _, a = small.generate_long(schedule, return_tokens=True)
        torch.manual_seed(11)
        _, b = small.generate_long(schedule, return_tokens=True, crossfade=0.2)
        assert torch.equal(a, b)
        # no change in the schedule: no crossfade at all
        unchanged = small.generate_long([(0.0, g["meta"]["texts"])], seed=5, crossfade=0.2)
        assert torch.equal(unchanged, small.generate_long([(0.0, g["meta"]["texts"])], seed=5))
        with pytest.raises(ValueError, match=r"crossfade must be <= 0.5, got 0.6"):
            small.generate_long(schedule, crossfade=0.6)
        with pytest.raises(ValueError, match=r"crossfade must be >= 0.0, got -1"):
            small.generate_long(schedule, crossfade=-1)
    finally:
        small.max_duration = old


def test_long_form_bad_schedule(small):
    with pytest.raises(ValueError, match="must start at 0 s"):
        small.generate_long([(1.0, "x")])
    with pytest.raises(ValueError, match="start times must increase"):
        small.generate_long([(0.0, "x"), (0.0, "y")])
    with pytest.raises(TypeError, match="non-empty list"):
        small.generate_long([])
    with pytest.raises(ValueError, match="no melody"):
        small.generate_long([(0.0, "x")], melody_schedule=[(0.0, torch.zeros(1, 100))], melody_sample_rate=32000)


def test_tokens_file_round_trip(small, tmp_path):
    audio, tokens = small.generate(TEXTS, return_tokens=True, seed=1)
    path = save_tokens(tmp_path / "take.pt", tokens, sample_rate=small.sample_rate, frame_rate=small.frame_rate,
                       model=small.name, meta={"seed": 1, "texts": TEXTS})
    package = load_tokens(path)
    assert torch.equal(package["tokens"], tokens)
    assert package["meta"]["texts"] == TEXTS
    assert torch.equal(small.generate_audio(path), audio)
    assert [p.name for p in tmp_path.iterdir()] == ["take.pt"]
    with pytest.raises(ValueError, match="not a tokens file"):
        torch.save({"x": 1}, tmp_path / "bad.pt")
        small.generate_audio(tmp_path / "bad.pt")
