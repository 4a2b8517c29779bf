"""Teacher competence: the server LLM's per-domain test accuracy after its one-time pretraining.

Pretrains the LLM exactly as an experiment with this config would (`llm.pretrain`, through the
same cache, so a later `lada run` of the config reuses the weights), then scores greedy paths on
a fresh sample of every suite domain, the held-out ones included, drawn from the same
distribution as an experiment's splits. Domains with few distinct questions (chain_sum 2,
gcd 1) overlap with pretraining, as they do in an experiment; accuracy on the unseen questions
alone is reported beside it. (Excluding seen questions would bias the sample: the questions a
generator rarely gives are not typical, e.g. mostly coprime pairs for gcd.) "Constant answer" is
the accuracy of always giving the domain's most common pretraining answer.

    python benchmarks/teacher.py [--config configs/quickstart.toml] [--set llm.pretrain.x=...]
        [--test-per-domain 50] [--threads 2]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from common import (
    ROOT,
    base_parser,
    constant_answer_accuracy,
    make_console,
    print_table,
    setup_environment,
    write_result,
)

from lada.experiments.config import load_config
from lada.models.pretrain import is_pretrained, pretrained_llm, pretraining_items
from lada.models.training import evaluate, optimizer_steps
from lada.tasks.gym_suite import SUITES, build_suite
from lada.tasks.item import ReasoningItem

#: Seed offset of the test items: a stream neither the splits nor pretraining draw from.
TEST_SEED_OFFSET = 20_000


def test_items(suite: str, per_domain: int, seed: int) -> list[ReasoningItem]:
    """`per_domain` items of every domain of `suite`, from a stream no split or pretraining
    draws (questions may still coincide where a domain has few)."""
    config = SUITES[suite]
    return build_suite(
        config.model_copy(
            update={
                "items_per_domain": per_domain,
                "total_items": None,
                "seed": config.seed + seed + TEST_SEED_OFFSET,
            }
        )
    )


def accuracy_by_domain(
    items: list[ReasoningItem], correct: list[bool], keep: set[str] | None = None
) -> dict[str, float | None]:
    """Per-domain accuracy over the items whose question is in `keep` (all when None)."""
    hits: dict[str, list[bool]] = {}
    for item, ok in zip(items, correct, strict=True):
        counted = hits.setdefault(item.domain, [])
        if keep is None or item.question in keep:
            counted.append(ok)
    return {domain: (sum(v) / len(v) if v else None) for domain, v in hits.items()}


def run(args: argparse.Namespace) -> dict:
    config = load_config(args.config, args.overrides)
    if config.llm.pretrain is None:
        raise SystemExit(f"{args.config}: llm.pretrain is not set; nothing is pretrained")
    pretrain = config.llm.pretrain.model_copy(update={"preset": config.llm.preset})
    cached = is_pretrained(pretrain)
    began = time.perf_counter()
    model = pretrained_llm(pretrain, device=config.device)
    pretrain_seconds = time.perf_counter() - began

    pretraining = pretraining_items(pretrain)
    test = test_items(pretrain.suite, args.test_per_domain, pretrain.seed)
    result = evaluate(model, test, max_new_tokens=config.train.max_new_tokens)
    correct = [p.correct for p in result.predictions]
    seen = {it.question for it in pretraining}
    unseen = {it.question for it in test} - seen
    config_path = Path(args.config).resolve()
    return {
        "config": str(
            config_path.relative_to(ROOT) if config_path.is_relative_to(ROOT) else args.config
        ),
        "overrides": args.overrides,
        "pretrain": pretrain.model_dump(),
        "pretrain_key": pretrain.key(),
        "pretrain_items": len(pretraining),
        "pretrain_steps": optimizer_steps(len(pretraining), pretrain.batch_size, pretrain.epochs),
        "pretrain_seconds": None if cached else round(pretrain_seconds, 1),
        "loaded_from_cache": cached,
        "held_out_domains": pretrain.held_out_domains,
        "test_per_domain": result.per_domain_n,
        "accuracy": result.accuracy,
        "per_domain_accuracy": result.per_domain,
        "per_domain_accuracy_unseen": accuracy_by_domain(test, correct, unseen),
        "per_domain_unseen_share": {
            domain: sum(it.question in unseen for it in test if it.domain == domain) / n
            for domain, n in result.per_domain_n.items()
        },
        "constant_answer_accuracy": constant_answer_accuracy(
            pretraining, test, key=lambda it: it.domain
        ),
        "samples": {
            domain: [
                {"question": it.question, "gold": it.answer, "path": p.path}
                for it, p in zip(test, result.predictions, strict=True)
                if it.domain == domain
            ][: args.samples]
            for domain in result.per_domain
        },
    }


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def main() -> None:
    parser = base_parser(__doc__)
    parser.set_defaults(threads=2)
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "quickstart.toml")
    parser.add_argument("--test-per-domain", type=int, default=50)
    parser.add_argument("--samples", type=int, default=2, help="paths kept per domain")
    args = parser.parse_args()
    started = time.perf_counter()
    setup_environment(args.threads)
    console = make_console()
    result = run(args)
    held_out = set(result["held_out_domains"])
    print_table(
        console,
        f"LLM after pretraining ({result['pretrain_steps']} steps of batch "
        f"{result['pretrain']['batch_size']}; {result['pretrain_seconds'] or 'cached'} s)",
        [
            "domain",
            "in pretraining",
            "constant answer",
            "LLM accuracy",
            "unseen questions",
            "LLM accuracy on them",
        ],
        [
            [
                domain,
                "no (held out)" if domain in held_out else "yes",
                f"{result['constant_answer_accuracy'][domain]:.0%}",
                f"{accuracy:.0%}",
                f"{result['per_domain_unseen_share'][domain]:.0%}",
                _pct(result["per_domain_accuracy_unseen"][domain]),
            ]
            for domain, accuracy in result["per_domain_accuracy"].items()
        ],
    )
    console.print(f"wrote {write_result('teacher', result, args.out, started)}")


if __name__ == "__main__":
    main()
