"""``bppo data score``: MagicVL-2B's complexity components by hand, the forward pass against a
plain one, ``load_scores``' errors, and the command end to end on a tiny model."""

import json
import math

import pytest
import torch

from cli.main import main
from prompts.tools.complexity import (
    ScoresError,
    ScoreWeights,
    combined_scores,
    load_scores,
    min_max_normalise,
    needs_larger_model,
    perplexity,
    task_complexity,
    text_complexity,
    type_token_ratio,
    words,
)
from prompts.tools.model_stats import (
    encode_pairs,
    first_blocks,
    fit_to_context,
    load_causal_lm,
    masked_mean,
    pair_stats,
    plan_batches,
    response_mean_nll,
)

TINY_CPU = "configs/tiny_cpu.yaml"


def test_words_and_type_token_ratio_counted_by_hand():
    sentence = "The angle and the other angle sum to 180."
    assert words(sentence) == ["the", "angle", "and", "the", "other", "angle", "sum", "to", "180"]
    # 9 words, 7 distinct (the, angle, and, other, sum, to, 180)
    assert type_token_ratio(sentence) == 7 / 9
    assert words("So x = 50°. The answer is \\boxed{50}.") == ["so", "x", "50", "the", "answer", "is", "boxed", "50"]
    assert type_token_ratio("?!") == 0.0


def test_response_loss_and_perplexity_from_fixed_logits():
    # Row 0: tokens [0, 1 | 2, 1], prompt = first two. Token t is predicted by the logits at t - 1:
    #   position 1 -> token 2: logits [0, 0, ln 2] -> softmax [1/4, 1/4, 1/2] -> p = 1/2
    #   position 2 -> token 1: logits [ln 3, 0, 0] -> softmax [3/5, 1/5, 1/5] -> p = 1/5
    # Positions 0 (predicts the prompt's 2nd token) and 3 (after the end) must not count.
    logits = torch.tensor(
        [
            [[9.0, -4.0, 2.0], [0.0, 0.0, math.log(2)], [math.log(3), 0.0, 0.0], [5.0, 5.0, -5.0]],
            # row 1: [2 | 0] and one pad; position 0 -> token 0: logits [ln 4, 0, 0] -> p = 4/6
            [[math.log(4), 0.0, 0.0], [7.0, 1.0, 1.0], [1.0, 2.0, 3.0], [0.0, 0.0, 0.0]],
        ]
    )
    input_ids = torch.tensor([[0, 1, 2, 1], [2, 0, 0, 0]])
    response_mask = torch.tensor([[0, 0, 1, 1], [0, 1, 0, 0]])
    nll = response_mean_nll(logits, input_ids, response_mask)
    expected_row0 = (math.log(2) + math.log(5)) / 2  # mean of -ln(1/2), -ln(1/5)
    assert nll[0].item() == pytest.approx(expected_row0)
    assert nll[1].item() == pytest.approx(math.log(6 / 4))
    assert perplexity(expected_row0) == pytest.approx(math.sqrt(10))  # exp(ln(10) / 2)


def test_masked_mean_and_batches_and_context_fit():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 6.0], [100.0, 100.0]]])  # [1, 3, 2]
    assert masked_mean(hidden, torch.tensor([[1, 1, 0]])).tolist() == [[2.0, 4.0]]
    # sorted by (length, index); a batch holds rows while rows x longest <= 10
    assert plan_batches([5, 2, 3, 2, 9], batch_tokens=10) == [[1, 3, 2], [0], [4]]
    assert fit_to_context([1, 2, 3], [4, 5], 8) == ([1, 2, 3], [4, 5])
    assert fit_to_context([1, 2, 3], [4, 5, 6], 4) == ([1, 2, 3], [4])  # the response's end goes first
    assert fit_to_context([1, 2, 3, 4], [5, 6], 3) == ([3, 4], [5])  # then the prompt's start


def test_batched_pass_equals_one_plain_forward_per_pair(tiny_model):
    model, tokenizer = load_causal_lm(tiny_model, "cpu")
    prompts = [
        "A triangle has base 7 and height 4. What is its area?",
        "What is 2 + 2?",
        "In triangle ABC, angle A is 50 degrees and angle B is 60 degrees. Find angle C.",
    ]
    responses = ["Area = 7 * 4 / 2 = 14. The answer is \\boxed{14}.", "\\boxed{4}", "C = 180 - 50 - 60 = 70."]
    pairs = encode_pairs(tokenizer, prompts, responses)
    stats = pair_stats(model, pairs, pad_id=0, embeddings=True, batch_tokens=64)
    for index, (prompt, response) in enumerate(pairs):
        ids = torch.tensor([prompt + response])
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0]  # [T, V]
            hidden = model.model(input_ids=ids).last_hidden_state[0]  # [T, H]
        targets = ids[0, len(prompt) :]
        nll = torch.nn.functional.cross_entropy(logits[len(prompt) - 1 : -1], targets)
        assert stats.losses[index] == pytest.approx(nll.item(), rel=1e-5)
        torch.testing.assert_close(stats.embeddings[index], hidden[: len(prompt)].mean(0), rtol=1e-5, atol=1e-5)
    assert stats.truncated == 0


def test_min_max_normalisation_and_text_score():
    assert min_max_normalise([2.0, 4.0, 6.0]) == [0.0, 0.5, 1.0]
    assert min_max_normalise([3.0, 3.0]) == [0.0, 0.0]  # constant: no ranking information
    assert min_max_normalise([]) == []
    # L^ = [0, .5, 1], T^ = [1, 0, .5], P^ = [1, 0, .5] -> means [2/3, 1/6, 2/3]
    text = text_complexity([10.0, 20.0, 30.0], [1.0, 0.5, 0.75], [3.0, 1.0, 2.0])
    assert text == pytest.approx([2 / 3, 1 / 6, 2 / 3])


def test_task_indicator_follows_the_papers_chain():
    beta, delta = 1.5, 0.5
    assert needs_larger_model(2.0, 1.0, beta=beta, delta=delta)  # 2.0 > 1.5 > 0.5
    assert not needs_larger_model(1.4, 1.0, beta=beta, delta=delta)  # 1.4 < 1.5
    assert not needs_larger_model(1.5, 1.0, beta=beta, delta=delta)  # strict: 1.5 is not > 1.5
    # 2.0 > 0.45 and 2.0 > delta, but beta * loss_large = 0.45 is under the floor: not counted
    assert not needs_larger_model(2.0, 0.3, beta=beta, delta=delta)
    task = task_complexity([2.0, 1.4, 2.0, 3.0], [1.0, 1.0, 0.3, 1.9], beta=beta, delta=delta)
    assert task == [1.0, 0.0, 0.0, 1.0]  # 3.0 > 2.85 > 0.5
    assert sum(task) / len(task) == 0.5  # the paper's dataset score C(M_s, M_l)


def test_combined_score_is_the_weighted_sum():
    assert combined_scores([0.2, 0.8], [1.0, 0.0], ScoreWeights(text=0.25, task=0.75)) == pytest.approx([0.8, 0.2])
    # no task term: the text weight is renormalised to 1
    assert combined_scores([0.2, 0.8], None, ScoreWeights(text=0.25, task=0.75)) == pytest.approx([0.2, 0.8])


def test_load_scores_and_its_errors(tmp_path):
    good = tmp_path / "scores.jsonl"
    good.write_text('{"id": "a", "score": 0.25, "text": 0.5}\n\n{"id": "b", "score": 1}\n')
    assert load_scores(good) == {"a": 0.25, "b": 1.0}
    with pytest.raises(
        ScoresError, match=r"row 3: 'text' must be a finite number, got None \(its columns: id, score\)"
    ):
        load_scores(good, "text")  # another column: b has none
    cases = {
        '{"id": "a", "score": 0.1}\n{"id": "b", "score": \n': "row 2: not valid JSON",
        '{"id": "a"}\n': "row 1: 'score' must be a finite number, got None",
        '{"id": "a", "score": NaN}\n': "row 1: 'score' must be a finite number, got nan",
        '{"id": 3, "score": 0.1}\n': "row 1: 'id' must be a non-empty string",
        '{"id": "a", "score": 0.1}\n{"id": "a", "score": 0.2}\n': "row 2: id 'a' appears twice",
        "[1, 2]\n": "row 1: expected an object, got list",
        "\n": "no rows",
    }
    for text, message in cases.items():
        bad = tmp_path / "bad.jsonl"
        bad.write_text(text)
        with pytest.raises(ScoresError, match=str(bad) + ": " + message.replace("(", r"\(").replace("[", r"\[")):
            load_scores(bad)
    with pytest.raises(ScoresError, match="no such file"):
        load_scores(tmp_path / "missing.jsonl")


def test_score_command_rows_summary_and_determinism(tiny_model, tmp_path, capsys):
    small = first_blocks(tiny_model, 1, tmp_path / "small")
    args = [
        "data",
        "score",
        "--config",
        TINY_CPU,
        "data.source.num_train=40",
        "--model",
        tiny_model,
        "--small-model",
        small,
        "--large-model",
        tiny_model,
        "--beta",
        "1.05",
        "--delta",
        "0.1",
    ]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    for name in ("scores.jsonl", "scores_summary.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    rows = [json.loads(line) for line in (tmp_path / "a" / "scores.jsonl").read_text().splitlines()]
    summary = json.loads((tmp_path / "a" / "scores_summary.json").read_text())
    assert len(rows) == 40 and rows[0]["id"] == "train-000000"
    assert set(rows[0]) == {"id", "length", "ttr", "perplexity", "loss_small", "loss_large", "task", "text", "score"}
    for row in rows:
        assert row["task"] == float(row["loss_small"] > 1.05 * row["loss_large"] > 0.1)
        assert row["score"] == pytest.approx(0.5 * row["text"] + 0.5 * row["task"], abs=2e-6)
        assert 0 <= row["text"] <= 1 and row["perplexity"] >= 1
    assert summary["task_term"] and summary["weights"] == {"text": 0.5, "task": 0.5}
    assert summary["models"] == {"perplexity": tiny_model, "small": small, "large": tiny_model}
    assert summary["means"]["task"] == pytest.approx(sum(r["task"] for r in rows) / 40, abs=1e-6)
    assert load_scores(tmp_path / "a" / "scores.jsonl")["train-000003"] == rows[3]["score"]
    assert "need the larger model" in capsys.readouterr().out


def test_score_command_without_task_models_and_bad_flags(tiny_model, tmp_path, capsys):
    out = tmp_path / "out"
    assert (
        main(
            [
                "data",
                "score",
                "--config",
                TINY_CPU,
                "data.source.num_train=12",
                "--model",
                tiny_model,
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert "task term left out" in capsys.readouterr().out
    rows = [json.loads(line) for line in (out / "scores.jsonl").read_text().splitlines()]
    assert all(r["task"] is None and r["score"] == r["text"] for r in rows)
    assert json.loads((out / "scores_summary.json").read_text())["weights"] == {"text": 1.0, "task": 0.0}
    bad = tmp_path / "bad"
    assert (
        main(
            [
                "data",
                "score",
                "--config",
                TINY_CPU,
                "--model",
                tiny_model,
                "--small-model",
                tiny_model,
                "--out",
                str(bad),
            ]
        )
        == 2
    )
    assert "--small-model and --large-model go together" in capsys.readouterr().err
    assert main(["data", "score", "--config", TINY_CPU, "--model", str(tmp_path / "nowhere"), "--out", str(bad)]) == 1
    assert f"--model {tmp_path / 'nowhere'}: not a local Hugging Face model directory" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "score", "--config", TINY_CPU, "--beta", "-1"])
    assert exit_info.value.code == 2 and "argument --beta: '-1': must be > 0" in capsys.readouterr().err
    assert not bad.exists()  # nothing half-written
