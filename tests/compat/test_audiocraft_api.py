"""What code written against Audiocraft 1.3 touches, checked on this package (see README.md here)."""
import pytest
import torch
from torch import nn

from audiocraft.data.audio import _av_read, audio_read, audio_write
from audiocraft.data.audio_utils import _clip_wav, normalize_audio
from audiocraft.models import MusicGen
from audiocraft.modules.codebooks_patterns import DelayedPatternProvider
from audiocraft.modules.conv import StreamableConvTranspose1d, pad1d, unpad1d
from audiocraft.modules.seanet import SEANetDecoder, SEANetEncoder
from audiocraft.modules.transformer import StreamingMultiheadAttention, StreamingTransformer
from audiocraft.utils.validation import ArgumentError, ArgumentTypeError, check_number


# ---------------------------------------------------------------------------------------------- exceptions
def test_argument_errors_are_value_and_assertion_errors():
    assert issubclass(ArgumentError, ValueError) and issubclass(ArgumentError, AssertionError)
    assert issubclass(ArgumentTypeError, TypeError) and issubclass(ArgumentTypeError, AssertionError)
    for catch in (ValueError, AssertionError):
        with pytest.raises(catch, match=r"x must be >= 0, got -1"):  # the clear message is kept
            check_number("x", -1, minimum=0)


@pytest.mark.parametrize("paddings", [(-1, 0), (0, -1), (-1, -1)])
def test_negative_paddings_raise_assertion_error(paddings):
    x = torch.randn(1, 1, 20)
    for mode in ("constant", "reflect"):
        with pytest.raises(AssertionError, match="paddings must be non-negative"):
            pad1d(x, paddings, mode=mode)
    with pytest.raises(AssertionError, match="paddings must be non-negative"):
        unpad1d(x, paddings)
    assert pad1d(x, (10, 30), mode="reflect").shape[-1] == 60 and unpad1d(x, (5, 0)).shape[-1] == 15


def test_constructor_refusals_are_assertion_errors():
    with pytest.raises(AssertionError, match="only makes sense for causal"):
        StreamableConvTranspose1d(2, 2, 4, stride=2, causal=False, trim_right_ratio=0.5)
    for cls in (SEANetEncoder, SEANetDecoder):
        with pytest.raises(AssertionError, match="disable_norm_outer_blocks=-1"):
            cls(disable_norm_outer_blocks=-1)
        with pytest.raises(AssertionError, match="disable_norm_outer_blocks=7"):
            cls(ratios=[1, 1, 2, 2], disable_norm_outer_blocks=7)


@pytest.mark.parametrize("timesteps, n_q", [(16, 4), (9, 2)])
def test_pattern_refuses_wrong_sizes_with_assertion_error(timesteps, n_q):
    pattern = DelayedPatternProvider(n_q).get_pattern(timesteps)
    with pytest.raises(AssertionError, match="more than the pattern"):
        pattern.build_pattern_sequence(torch.zeros(1, n_q, timesteps + 1, dtype=torch.long), 99)
    for wrong_q in (n_q - 1, n_q + 1):
        with pytest.raises(AssertionError):
            pattern.build_pattern_sequence(torch.zeros(1, wrong_q, timesteps, dtype=torch.long), 99)


def test_musicgen_argument_errors_are_assertion_errors():
    model = MusicGen.get_pretrained("debug", device="cpu")
    model.set_generation_params(duration=0.2)
    with pytest.raises(AssertionError, match="descriptions has 3 items but prompt has batch size 2"):
        model.generate_continuation(torch.randn(2, 1, 3200), 32000, ["a", "b", "c"])
    with pytest.raises(AssertionError, match="extend_stride must be < max_duration"):
        model.set_generation_params(extend_stride=40)
    assert model.generate_continuation(torch.randn(2, 1, 3200), 32000, ["a", None]).shape == (2, 1, 6400)


# ---------------------------------------------------------------------------------------------- audio helpers
def test_av_read_is_audio_read_without_padding(tmp_path):
    wav = 0.5 * torch.sin(torch.arange(16000) / 10.0)[None]
    path = audio_write(tmp_path / "x", wav, 16000, strategy="clip")
    read, sr = _av_read(path, 0.25, 0.5)
    expected, _ = audio_read(path, 0.25, 0.5)
    assert sr == 16000 and read.shape == (1, 8000) and torch.equal(read, expected)
    tail, _ = _av_read(path, 0.75, 1.0)  # past the end: no padding
    assert tail.shape == (1, 4000)


def test_clip_wav_clips_in_place():
    audio = 10.0 * torch.randn(2, 1, 12)
    out = _clip_wav(audio)
    assert out is audio and float(audio.abs().max()) <= 1 and float(audio.abs().max()) == 1


@pytest.mark.parametrize("strategy", ["clip", "rms", "peak"])
def test_normalize_audio_takes_batches(strategy):
    torch.manual_seed(0)
    audio = 10.0 * torch.randn(2, 1, 12)
    before = audio.clone()
    out = normalize_audio(audio, strategy=strategy)
    assert out.shape == audio.shape and float(out.abs().max()) <= 1
    assert torch.equal(audio, before)  # the input is left alone
    if strategy == "peak":  # the peak of the whole batch, as Audiocraft
        torch.testing.assert_close(out, audio / audio.abs().max() * 10 ** (-1 / 20))


def test_normalize_audio_loudness_per_item_of_a_batch():
    torch.manual_seed(0)
    batch = 0.1 * torch.randn(2, 2, 16000)
    out = normalize_audio(batch, strategy="loudness", sample_rate=16000)
    for item, normalized in zip(batch, out):
        torch.testing.assert_close(normalized, normalize_audio(item, strategy="loudness", sample_rate=16000))


# ---------------------------------------------------------------------------------------------- streaming API
def test_streaming_state_is_a_flat_dict_of_tensors_that_replays_a_step():
    torch.manual_seed(0)
    model = StreamingTransformer(16, 4, 2, causal=True, dropout=0.0).eval()
    x = torch.randn(1, 4, 16)
    with torch.no_grad(), model.streaming():
        model(x[:, :1])
        state = model.get_streaming_state()
        assert state and all(isinstance(v, torch.Tensor) for v in state.values())
        saved = {k: v.clone() for k, v in state.items()}
        first = model(x[:, 1:2])
        model.set_streaming_state(saved)
        again = model(x[:, 1:2])
        assert torch.equal(first, again)
        assert model.flush() is None  # flush exists at every level
        assert model.layers[0].self_attn.flush() is None


# ---------------------------------------------------------------------------------------------- attention
def test_custom_false_attention_exposes_its_multihead_attention():
    torch.manual_seed(0)
    attn = StreamingMultiheadAttention(16, 4, custom=False, dropout=0.0)
    assert isinstance(attn.mha, nn.MultiheadAttention)
    assert attn.in_proj_weight is attn.mha.in_proj_weight and attn.out_proj is attn.mha.out_proj
    assert all(k.startswith("mha.") for k in attn.state_dict())
    x = torch.randn(2, 5, 16)
    torch.testing.assert_close(attn(x, x, x)[0], attn.mha(x, x, x, need_weights=False)[0], atol=1e-6, rtol=1e-5)
    custom = StreamingMultiheadAttention(16, 4, custom=True)
    custom.load_state_dict(attn.state_dict())  # old checkpoints of either layout load into either
    torch.testing.assert_close(custom(x, x, x)[0], attn(x, x, x)[0])


def test_attention_as_float32_changes_bf16_results_in_both_layouts():
    for custom in (True, False):
        torch.manual_seed(0)
        plain = StreamingTransformer(16, 4, 2, dropout=0.0, dtype=torch.bfloat16, custom=custom)
        fp32 = StreamingTransformer(16, 4, 2, dropout=0.0, attention_as_float32=True, dtype=torch.bfloat16,
                                    custom=custom)
        if not custom:
            for layer in fp32.layers:
                layer.self_attn.mha.to(torch.float32)
        fp32.load_state_dict(plain.state_dict())
        x = torch.randn(3, 12, 16, dtype=torch.bfloat16)
        with torch.no_grad():
            assert not torch.allclose(plain(x), fp32(x))


@pytest.mark.parametrize("kwargs, accepted", [
    (dict(causal=True, cross_attention=True), False),
    (dict(causal=True, kv_repeat=4), False),  # kv_repeat needs custom=True
    (dict(causal=True, kv_repeat=4, custom=True), True),
    (dict(causal=True, kv_repeat=4, custom=True, cross_attention=True), False),
    (dict(qk_layer_norm=True), False),
    (dict(qk_layer_norm=True, custom=True), True),
    (dict(cross_attention=True, custom=True), True),
    (dict(cross_attention=True), True),
    (dict(past_context=3), False),
])
def test_constructor_combinations_follow_audiocraft(kwargs, accepted):
    if accepted:
        attn = StreamingMultiheadAttention(64, 8, **kwargs)
        x = torch.randn(2, 6, 64)
        assert attn(x, x, x)[0].shape == x.shape
    else:
        with pytest.raises(AssertionError):
            StreamingMultiheadAttention(64, 8, **kwargs)


def test_cross_attention_streams_exactly_with_a_torch_state_dict():
    torch.manual_seed(0)
    ours = StreamingMultiheadAttention(32, 2, cross_attention=True, custom=True)
    ref = nn.MultiheadAttention(32, 2, batch_first=True)
    ours.load_state_dict(ref.state_dict())
    q, kv = torch.randn(3, 7, 32), torch.randn(3, 9, 32)
    with torch.no_grad():
        full = ours(q, kv, kv)[0]
        torch.testing.assert_close(full, ref(q, kv, kv)[0], atol=1e-6, rtol=1e-5)
        with ours.streaming():
            steps = torch.cat([ours(q[:, t:t + 1], kv, kv)[0] for t in range(7)], dim=1)
    torch.testing.assert_close(steps, full, atol=1e-6, rtol=1e-5)
