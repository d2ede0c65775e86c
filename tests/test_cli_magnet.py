"""The `musicgen` command with a MAGNeT checkpoint: the facade is picked from the checkpoint, MAGNeT's options."""
import pytest

from audiocraft.cli import CLIError, _set_generation_params, build_parser, run
from audiocraft.models import MAGNeT

MAGNET = "facebook/magnet-small-10secs"


def test_cli_generates_with_magnet(tmp_path):
    """In process (the subprocess path is the one of tests/test_cli.py): the MAGNeT facade is picked."""
    from audiocraft.data.audio import audio_info

    out = tmp_path / "take.wav"
    written = run(build_parser().parse_args(["disco beat", "--model", MAGNET, "--out", str(out), "--seed", "3",
                                             "--temperature", "2", "--no-progress", "--no-metadata"]))
    assert written == [out]
    info = audio_info(out)
    assert info.sample_rate == 32000 and info.channels == 1
    assert abs(info.duration - 48 * 640 / 32000) < 1e-3  # the 1 s segment cut to 16 spans of 3 frames


@pytest.fixture(scope="module")
def magnet():
    return MAGNeT.get_pretrained(MAGNET, device="cpu")


def test_cli_options_map_to_magnet(magnet):
    parser = build_parser()
    _set_generation_params(magnet, parser.parse_args(["x", "--model", MAGNET]), 18.0)
    assert magnet.generation_params["temp"] == 3.0 and magnet.generation_params["top_p"] == 0.9  # MAGNeT's own
    _set_generation_params(magnet, parser.parse_args(["x", "--cfg", "5", "--top-k", "50", "--greedy",
                                                      "--duration", "1"]), 18.0)
    params = magnet.generation_params
    assert (params["max_cfg_coef"], params["top_k"], params["top_p"], params["use_sampling"]) == (5.0, 50, 0.0, False)
    with pytest.raises(CLIError, match=r"--duration: .* generates exactly 1 s, got 4.0"):
        _set_generation_params(magnet, parser.parse_args(["x", "--duration", "4"]), 18.0)
    magnet.set_generation_params()
