"""``--device`` on the command line."""

import torch

HAS_CUDA = torch.cuda.is_available()


def test_the_cli_refuses_cuda_without_one_before_reading_the_data(run_cli, tmp_path):
    if HAS_CUDA:
        return  # the refusal needs a machine without CUDA (CI's)
    out = tmp_path / "scan"
    run = run_cli(["scan", tmp_path / "never-read.parquet", "--out", out, "--no-mlflow",
                   "--device", "cuda"])
    assert run.code == 2 and "torch sees no CUDA device" in run.stderr, run.stderr
    assert not out.exists()
