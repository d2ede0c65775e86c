"""Running an official golden's call on a model and comparing its audio checksums (the stereo / AudioGen tests)."""
import typing as tp

import torch


def run_golden(model: tp.Any, g: dict, call: tp.Callable[[tp.Any], tp.Any]) -> tp.Any:
    """As the golden was made: ``model.max_duration = max_duration_override`` (when set) before
    ``set_generation_params(**params)``, ``torch.manual_seed(seed)`` right before ``call(model)`` (when set);
    ``max_duration`` is restored after."""
    meta = g["meta"]
    saved = model.max_duration
    if meta.get("max_duration_override") is not None:
        model.max_duration = meta["max_duration_override"]
    try:
        model.set_generation_params(**meta["set_generation_params"])
        if meta.get("torch.manual_seed_right_before_call") is not None:
            torch.manual_seed(meta["torch.manual_seed_right_before_call"])
        return call(model)
    finally:
        model.max_duration = saved


def check_channel_checksums(g: dict, audio: torch.Tensor) -> None:
    """The returned audio's shape and per-channel rms / mean against the golden's (1e-4)."""
    assert list(audio.shape) == g["meta"]["audio_shape"]
    a = audio.double()
    torch.testing.assert_close(a.pow(2).mean(dim=2).sqrt(), g["audio_rms_per_channel"].double(), atol=1e-5,
                               rtol=1e-4)
    n = a.shape[-1]
    torch.testing.assert_close(a.sum(dim=2) / n, g["audio_sum_per_channel"].double() / n, atol=1e-5, rtol=1e-4)


def texts(g: dict) -> tp.List[tp.Optional[str]]:
    """The golden's texts (or descriptions)."""
    return g["meta"].get("texts") or g["meta"]["descriptions"]


def continuation_of(model: tp.Any, g: dict) -> tp.Callable[[torch.Tensor], tp.Any]:
    """``wav -> model.generate_continuation(wav, golden prompt rate, golden descriptions, return_tokens=True)``, run
    as the golden was made."""
    sr = g["meta"]["prompt_sr"]
    return lambda wav: run_golden(model, g, lambda m: m.generate_continuation(wav, sr, texts(g), return_tokens=True))


def check_generation(g: dict, audio: torch.Tensor, tokens: torch.Tensor) -> None:
    """Tokens exact (the prompt's first, when the golden has one), audio checksums within 1e-4."""
    if "prompt_tokens" in g:
        assert torch.equal(tokens[..., :g["prompt_tokens"].shape[-1]], g["prompt_tokens"])
    assert torch.equal(tokens, g["tokens"])
    check_channel_checksums(g, audio)
