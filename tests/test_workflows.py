"""The GitHub Actions workflows, run locally by :mod:`tests.workflow_runner`.

Layers, as everywhere in this suite: the runner's own pieces first (the expression evaluator,
matrices, the ``GITHUB_OUTPUT`` format, artifact roots, caches), then small synthetic workflows
that pin down GitHub's semantics the real workflows rely on, then static policy checks and the
workflow lint (JSON schema and zizmor), and finally the real workflows end to end against the
embedded sandbox: ``continuous-data.yml`` dispatched in sandbox mode (every job, a shard matrix
sized from the plan, a push race on the state commit), a quiet day, a second version restored
from the cache, mutations that must fail, and ``validate.yml`` on a pull request.

The end-to-end runs share one "GitHub repository" (a bare git repository seeded with this
working tree) and one sandbox, in the order written here; each test states what it starts from.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import sysconfig
import textwrap
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline import actions
from pipeline.cli import validate_workflows
from pipeline.manifest import load
from pipeline.sandbox import (
    GITHUB_TOKEN,
    KAGGLE_KEY,
    KAGGLE_USERNAME,
    WEBHOOK_SECRET,
    ZENODO_TOKEN,
    Sandbox,
)
from tests.workflow_runner import (
    ActionFailed,
    ArtifactStore,
    CacheStore,
    ExpressionError,
    Filtered,
    GitRemote,
    RunResult,
    Scope,
    Strict,
    WorkflowError,
    WorkflowRunner,
    condition,
    evaluate,
    evaluate_value,
    expand_matrix,
    interpolate,
    iter_run_steps,
    read_command_file,
    upload_set,
    working_tree_files,
)

REPO = Path(__file__).resolve().parent.parent
WORKFLOWS = REPO / ".github" / "workflows"
CONTINUOUS = ".github/workflows/continuous-data.yml"
VALIDATE = ".github/workflows/validate.yml"
SCRIPTS = Path(sysconfig.get_path("scripts"))
SHA_PIN = re.compile(r"^\s*(?:- )?uses: ([\w.-]+/[\w./-]+)@([0-9a-f]{40}) # v\d+\.\d+\.\d+$")


def ev(expression: str, **contexts: Any) -> Any:
    return evaluate(expression, Scope(contexts, status="success"))


# -- the expression evaluator --------------------------------------------------------------------

@pytest.mark.parametrize(("expression", "expected"), [
    ("1 == 1.0", True),
    ("'abc' == 'ABC'", True),                # strings compare case-insensitively
    ("null == ''", True),                    # different types: both become the number 0
    ("'' == 0", True),
    ("'1' == 1", True),
    ("true == 1", True),
    ("'true' == true", False),               # 'true' is NaN as a number
    ("'a' != 'b'", True),
    ("2 < 10", True),
    ("'b' > 'A'", True),
    ("'x' < 1", False),                      # NaN compares false
    ("!''", True),
    ("!'0'", False),
    ("0 || 'fallback'", "fallback"),         # && and || return an operand, not a boolean
    ("'a' && 'b'", "b"),
    ("null && 'b'", None),
    ("(1 == 2) || (2 == 2) && 'x'", "x"),
    ("0x10 == 16", True),
    ("-1.5e1 == -15", True),
    ("'it''s'", "it's"),
])
def test_operators_and_loose_typing(expression: str, expected: Any) -> None:
    assert ev(expression) == expected


def test_functions() -> None:
    assert ev("contains(fromJSON('[\"a\", 1]'), 'A')") is True
    assert ev("contains('Hello world', 'WORLD')") is True
    assert ev("startsWith('refs/heads/main', 'refs/heads/')") is True
    assert ev("endsWith('state.JSON', '.json')") is True
    assert ev("format('{0}/{1} {{literal}}', 3, 'x')") == "3/x {literal}"
    assert ev("join(fromJSON('[1, 2, 3]'), '-')") == "1-2-3"
    assert ev("toJSON(fromJSON('{\"a\": [1]}'))") == '{\n  "a": [\n    1\n  ]\n}'
    assert ev("fromJSON('[1,2]')[1]") == 2
    assert ev("fromJSON('{\"k\": true}').k") is True


def test_contexts_strict_for_declared_structure_lenient_for_values() -> None:
    needs = Strict({"plan": Strict({"result": "success",
                                    "outputs": Strict({"shards": "[1,2]"}, "outputs")},
                                   "needs.plan")}, "needs")
    assert ev("needs.plan.outputs.shards", needs=needs) == "[1,2]"
    assert ev("needs.PLAN.Result", needs=needs) == "success"          # case-insensitive
    assert ev("fromJSON(needs.plan.outputs.shards)[0]", needs=needs) == 1
    assert ev("needs.*.result", needs=needs) == ["success"]
    assert isinstance(ev("needs.*.result", needs=needs), Filtered)
    assert ev("contains(needs.*.result, 'failure')", needs=needs) is False
    with pytest.raises(ExpressionError, match="needs has no 'plna'"):
        ev("needs.plna.result", needs=needs)
    with pytest.raises(ExpressionError, match="has no 'shard'"):
        ev("needs.plan.outputs.shard", needs=needs)
    steps = {"detect": {"outputs": {}}}                  # values: missing is null, as on GitHub
    assert ev("steps.detect.outputs.planned", steps=steps) is None
    assert ev("steps.detect.outputs.planned == ''", steps=steps) is True
    assert ev("matrix['shard']", matrix=Strict({"shard": 2}, "matrix")) == 2


@pytest.mark.parametrize(("expression", "message"), [
    ("hashFiles('requirements.txt')", "not emulated"),
    ("secrets.TOKEN", "context 'secrets' is not available"),
    ("1 ==", "unexpected end"),
    ("a.'b'", "expected a property name"),
    ("'unterminated", "unexpected"),
    ("format('{1}', 'x')", "bad placeholder"),
    ("fromJSON('{')", "is not JSON"),
    ("success(1)", "takes 0"),
])
def test_expressions_that_cannot_be_evaluated_fail(expression: str, message: str) -> None:
    with pytest.raises(ExpressionError, match=re.escape(message)):
        ev(expression, a={})


def test_status_functions_only_where_allowed() -> None:
    with pytest.raises(ExpressionError, match="not allowed here"):
        evaluate("success()", Scope({}))
    assert evaluate("failure()", Scope({}, status="failure")) is True
    assert evaluate("always() && !cancelled()", Scope({}, status="failure")) is True


def test_templates_keep_types_only_when_the_value_is_one_expression() -> None:
    scope = Scope({"inputs": {"n": "3", "mode": None}})
    assert evaluate_value("${{ fromJSON('[1, 2]') }}", scope) == [1, 2]
    assert evaluate_value(" ${{ inputs.mode || 'production' }} ", scope) == "production"
    assert evaluate_value("shard-${{ inputs.n }}", scope) == "shard-3"
    assert interpolate("${{ true }}/${{ 1.5 }}/${{ 2.0 }}/${{ null }}", scope) == "true/1.5/2/"
    assert evaluate_value({"a": ["${{ inputs.n }}"]}, scope) == {"a": ["3"]}


def test_if_conditions() -> None:
    ok, failed = Scope({"x": {"v": "1"}}, status="success"), Scope({}, status="failure")
    assert condition(None, ok) is True and condition(None, failed) is False
    assert condition("x.v == '1'", ok) is True
    assert condition("${{ x.v == '1' }}", ok) is True
    assert condition("${{ true }}", failed) is False    # implicitly success() && (...)
    assert condition("always()", failed) is True
    assert condition(False, ok) is False
    with pytest.raises(WorkflowError, match="always true"):
        condition("${{ x.v }} == '2'", ok)


# -- matrices, command files, artifacts, caches --------------------------------------------------

def test_matrix_expansion() -> None:
    assert expand_matrix({"shard": [1, 2, 3]}) == [{"shard": 1}, {"shard": 2}, {"shard": 3}]
    combos = expand_matrix({"os": ["a", "b"], "py": ["3.11"],
                            "exclude": [{"os": "b"}],
                            "include": [{"os": "a", "extra": "yes"}, {"os": "c", "py": "3.12"}]})
    assert combos == [{"os": "a", "py": "3.11", "extra": "yes"}, {"os": "c", "py": "3.12"}]
    with pytest.raises(WorkflowError, match="does not contain any values"):
        expand_matrix({"shard": []})
    with pytest.raises(WorkflowError, match="must be a list"):
        expand_matrix({"shard": 3})


def test_command_files_read_what_the_pipeline_writes(tmp_path: Path) -> None:
    out = tmp_path / "output"
    out.write_text(actions.format_outputs({"plain": "a=b", "multi": "one\ntwo", "flag": True})
                   + "\nlegacy<<EOF\nx\nEOF\n", encoding="utf-8")
    assert read_command_file(out, "GITHUB_OUTPUT") == {
        "plain": "a=b", "multi": "one\ntwo", "flag": "true", "legacy": "x"}
    out.write_text("no equals sign\n", encoding="utf-8")
    with pytest.raises(WorkflowError, match="invalid line"):
        read_command_file(out, "GITHUB_OUTPUT")
    out.write_text("x<<EOF\nnever closed\n", encoding="utf-8")
    with pytest.raises(WorkflowError, match="not closed"):
        read_command_file(out, "GITHUB_OUTPUT")


def _tree(root: Path, *names: str) -> None:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(name, encoding="utf-8")


def test_upload_artifact_root_is_the_common_ancestor_of_the_search_paths(tmp_path: Path) -> None:
    _tree(tmp_path, "work/plan.json", "work/outcomes/1.json", "work/.hidden/x",
          "state/state.json")
    def rel(files: list[Path], root: Path) -> tuple[list[str], str]:
        return ([f.relative_to(root).as_posix() for f in files],
                root.relative_to(tmp_path).as_posix())

    # one file: rooted at its folder, so it downloads into `path` directly
    assert rel(*upload_set("work/plan.json", tmp_path)) == (["plan.json"], "work")
    # two search paths: rooted at their common ancestor, even when one of them is missing
    assert rel(*upload_set("work/outcomes/\nwork/records/", tmp_path)) == (
        ["outcomes/1.json"], "work")
    assert rel(*upload_set("state/state.json\nfeed/dataset.atom", tmp_path)) == (
        ["state/state.json"], ".")
    # a folder: rooted at the folder; hidden files are left out unless asked for
    assert rel(*upload_set("work", tmp_path)) == (["outcomes/1.json", "plan.json"], "work")
    assert ".hidden/x" in rel(*upload_set("work", tmp_path, include_hidden=True))[0]
    assert rel(*upload_set("work/*.json\n!work/plan.json", tmp_path)) == ([], "work")


def test_artifacts_are_immutable_unless_overwritten(tmp_path: Path) -> None:
    _tree(tmp_path, "a/x.txt")
    store = ArtifactStore(tmp_path / "store")
    files, base = upload_set("a/x.txt", tmp_path)
    store.upload("one", files, base, overwrite=False)
    with pytest.raises(ActionFailed, match="already exists"):
        store.upload("one", files, base, overwrite=False)
    store.upload("one", files, base, overwrite=True)
    store.download("one", tmp_path / "out")
    assert (tmp_path / "out" / "x.txt").read_text(encoding="utf-8") == "a/x.txt"
    with pytest.raises(ActionFailed, match="not found"):
        store.download("two", tmp_path / "out")


def test_cache_exact_key_then_newest_prefix(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    caches = CacheStore(tmp_path / "caches")
    for run in ("1", "2"):
        _tree(ws, f"versions/{run}/index.json")
        assert caches.save(f"versions-state-{run}", ["versions"], ws).startswith("saved")
    assert "immutable" in caches.save("versions-state-2", ["versions"], ws)
    fresh = tmp_path / "fresh"
    assert caches.restore("versions-state-3", ["versions-state-"], ["versions"], fresh) \
        == "versions-state-2"
    assert (fresh / "versions" / "2" / "index.json").is_file()
    assert caches.restore("versions-other-3", ["versions-other-"], ["versions"], fresh) is None


# -- synthetic workflows: the GitHub semantics the real ones rely on -----------------------------

@dataclass
class Mini:
    """A throwaway repository holding one synthetic workflow, and its runner."""

    remote: GitRemote
    runner: WorkflowRunner
    root: Path

    def run(self, workflow: str, event: str = "workflow_dispatch",
            inputs: Mapping[str, Any] | None = None) -> RunResult:
        self.remote.commit({".github/workflows/w.yml": textwrap.dedent(workflow)}, "workflow",
                           scratch=self.root / "scratch")
        return self.runner.run(".github/workflows/w.yml", event=event, inputs=inputs)


@pytest.fixture
def mini(tmp_path: Path) -> Mini:
    remote = GitRemote(tmp_path / "origin.git")
    remote.commit({"README.md": "synthetic\n"}, "seed", scratch=tmp_path / "scratch")
    runner = WorkflowRunner(remote, tmp_path / "runner", secrets={"REPO_SECRET": "r"},
                            environments={"sandbox": {"ENV_SECRET": "e"}})
    return Mini(remote, runner, tmp_path)


def test_outputs_env_path_summary_matrix_and_continue_on_error(mini: Mini) -> None:
    run = mini.run("""
        on:
          workflow_dispatch:
            inputs:
              count: {type: string, default: "3"}
        env:
          GREETING: hello ${{ inputs.count }}
        jobs:
          first:
            runs-on: ubuntu-latest
            outputs:
              list: ${{ steps.make.outputs.list }}
              multi: ${{ steps.make.outputs.multi }}
            steps:
              - id: make
                env:
                  COUNT: ${{ inputs.count }}
                run: |
                  echo "list=[$(seq -s , 1 "$COUNT")]" >> "$GITHUB_OUTPUT"
                  printf 'multi<<EOF\\nline one\\nline two\\nEOF\\n' >> "$GITHUB_OUTPUT"
                  echo "FROM_STEP=set by a step" >> "$GITHUB_ENV"
                  mkdir -p "$RUNNER_TEMP/tools"
                  printf '#!/bin/sh\\necho tool ran\\n' > "$RUNNER_TEMP/tools/mytool"
                  chmod +x "$RUNNER_TEMP/tools/mytool"
                  echo "$RUNNER_TEMP/tools" >> "$GITHUB_PATH"
                  echo "### made" >> "$GITHUB_STEP_SUMMARY"
              - name: Later steps see GITHUB_ENV and GITHUB_PATH
                if: env.GREETING == 'hello 3' && env.FROM_STEP != ''
                run: |
                  test "$FROM_STEP" = "set by a step" && test "$GREETING" = "hello 3"
                  mytool
              - name: Flaky
                id: flaky
                continue-on-error: true
                run: exit 3
              - name: After a continued failure
                if: steps.flaky.outcome == 'failure' && steps.flaky.conclusion == 'success'
                run: echo "::warning::flaky failed as expected"
          fan:
            needs: first
            runs-on: ubuntu-latest
            strategy:
              matrix:
                n: ${{ fromJSON(needs.first.outputs.list) }}
                include:
                  - n: 2
                    extra: two
            steps:
              - env:
                  N: ${{ matrix.n }}
                  EXTRA: ${{ matrix.extra }}
                  TOTAL: ${{ strategy.job-total }}
                  MULTI: ${{ needs.first.outputs.multi }}
                run: |
                  echo "leg $N of $TOTAL extra=$EXTRA"
                  test "$MULTI" = "$(printf 'line one\\nline two')"
        """, inputs={"count": "3"})
    assert run.ok, run.report()
    first = run.job("first")
    assert first.outputs["list"] == "[1,2,3]"
    assert first.step("Flaky").outcome == "failure" and first.step("Flaky").conclusion == "success"
    assert first.step("After a continued failure").outcome == "success"
    assert first.annotations == ["warning: flaky failed as expected"]
    later = first.step("Later steps see GITHUB_ENV and GITHUB_PATH")
    assert later.outcome == "success" and "tool ran" in later.log
    assert first.summary == "### made\n"
    legs = run.jobs["fan"]
    assert [leg.matrix for leg in legs] == [{"n": 1}, {"n": 2, "extra": "two"}, {"n": 3}]
    assert "leg 2 of 3 extra=two" in legs[1].steps[0].log


def test_job_conditions_follow_every_ancestor(mini: Mini) -> None:
    """A job's implicit success() needs *all* ancestors to have succeeded, and a skipped one
    has not (actions/runner#2205): `notify` in continuous-data.yml must say always()."""
    run = mini.run("""
        on: workflow_dispatch
        jobs:
          a:
            if: false
            runs-on: ubuntu-latest
            steps: [{run: "true"}]
          b:
            needs: a
            if: always()
            runs-on: ubuntu-latest
            steps: [{run: "true"}]
          c:
            needs: b
            runs-on: ubuntu-latest
            steps: [{run: "true"}]
          d:
            needs: b
            if: always() && needs.b.result == 'success'
            runs-on: ubuntu-latest
            steps: [{run: "true"}]
          broken:
            runs-on: ubuntu-latest
            strategy:
              matrix: {k: [1, 2]}
            steps:
              - run: exit 1
              - name: Not reached
                run: "true"
              - name: Cleanup
                if: failure()
                run: "true"
          after-broken:
            needs: broken
            runs-on: ubuntu-latest
            steps: [{run: "true"}]
        """)
    assert run.results == {"a": "skipped", "b": "success", "c": "skipped", "d": "success",
                           "broken": "failure", "after-broken": "skipped"}
    broken = run.jobs["broken"]
    assert [leg.result for leg in broken] == ["failure", "cancelled"]      # fail-fast
    assert [s.outcome for s in broken[0].steps] == ["failure", "skipped", "success"]
    assert not run.ok


def test_environment_secrets_and_where_secrets_may_appear(mini: Mini) -> None:
    run = mini.run("""
        on: workflow_dispatch
        jobs:
          inside:
            runs-on: ubuntu-latest
            environment: ${{ 'sandbox' }}
            steps:
              - env: {A: "${{ secrets.REPO_SECRET }}", B: "${{ secrets.ENV_SECRET }}"}
                run: test "$A$B" = re
          outside:
            runs-on: ubuntu-latest
            steps:
              - env: {B: "${{ secrets.ENV_SECRET }}", T: "${{ secrets.GITHUB_TOKEN }}"}
                run: test -z "$B" && test -n "$T"
        """)
    assert run.ok, run.report()
    assert run.job("inside").environment == "sandbox"
    with pytest.raises(ExpressionError, match="'secrets' is not available"):
        mini.run("""
            on: workflow_dispatch
            jobs:
              j:
                runs-on: ubuntu-latest
                steps: [{if: "secrets.REPO_SECRET != ''", run: "true"}]
            """)


def test_pushing_needs_persisted_credentials(mini: Mini) -> None:
    workflow = """
        on: workflow_dispatch
        jobs:
          push:
            runs-on: ubuntu-latest
            steps:
              - uses: actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683 # v4.2.2
                with:
                  persist-credentials: {persist}
              - run: |
                  git config user.name bot && git config user.email bot@example.invalid
                  echo change > file.txt && git add file.txt && git commit -qm "from the job"
                  git push origin HEAD:main
        """
    failed = mini.run(workflow.replace("{persist}", "false"))
    assert failed.results["push"] == "failure"
    assert "persist-credentials-is-false" in failed.job("push").steps[1].log
    assert mini.run(workflow.replace("{persist}", "true")).ok
    assert mini.remote.subjects(1) == ["from the job"]


def test_artifacts_between_jobs_and_a_step_timeout(mini: Mini) -> None:
    run = mini.run("""
        on: workflow_dispatch
        jobs:
          make:
            runs-on: ubuntu-latest
            strategy: {matrix: {k: [1, 2]}}
            steps:
              - env: {K: "${{ matrix.k }}"}
                run: mkdir -p work/outcomes && echo "$K" > "work/outcomes/$K.json"
              - uses: actions/upload-artifact@ea165f8d65b6e75b540449e92b4886f43607fa02 # v4.6.2
                with:
                  name: shard-${{ matrix.k }}
                  path: |
                    work/outcomes/
                    work/records/
          merge:
            needs: make
            runs-on: ubuntu-latest
            steps:
              - uses: actions/download-artifact@d3f86a106a0bac45b974a628896c90dbdf5c8093 # v4.3.0
                with: {pattern: shard-*, merge-multiple: true, path: work}
              - uses: actions/download-artifact@d3f86a106a0bac45b974a628896c90dbdf5c8093 # v4.3.0
                with: {pattern: shard-*, path: separate}
              - run: |
                  test "$(cat work/outcomes/1.json work/outcomes/2.json)" = "$(printf '1\\n2')"
                  test -f separate/shard-2/outcomes/2.json
              - name: Too slow
                timeout-minutes: 0.02
                run: sleep 30
        """)
    assert run.results["make"] == "success" and run.results["merge"] == "failure"
    merge = run.job("merge")
    assert [s.outcome for s in merge.steps] == ["success", "success", "success", "failure"]
    assert "timeout" in merge.step("Too slow").log


@pytest.mark.parametrize(("snippet", "message"), [
    ("uses: actions/checkout", "not emulated"),
    ("uses: some/action@0123456789012345678901234567890123456789", "not emulated"),
    ("{uses: 'actions/download-artifact@v4', with: {merge_multiple: true}}", "misspelt"),
    ("{env: {X: '${{ steps.nope.outputs.x }}'}, run: 'true'}", "steps has no 'nope'"),
    ("{env: {X: '${{ inputs.typo }}'}, run: 'true'}", "inputs has no 'typo'"),
    ("{run: 'true', shell: pwsh}", "shell 'pwsh' is not emulated"),
])
def test_what_the_runner_cannot_do_fails_the_run(mini: Mini, snippet: str, message: str) -> None:
    workflow = f"""
        on: workflow_dispatch
        jobs:
          j:
            runs-on: ubuntu-latest
            steps:
              - {snippet}
        """
    with pytest.raises(WorkflowError, match=re.escape(message)):
        mini.run(workflow)


def test_inputs_are_checked_like_github(mini: Mini) -> None:
    workflow = """
        on:
          schedule: [{cron: "17 5 * * *"}]
          workflow_dispatch:
            inputs:
              publish: {type: choice, options: [none, sandbox], default: none}
        jobs:
          j:
            runs-on: ubuntu-latest
            steps:
              - env: {MODE: "${{ inputs.publish || 'production' }}"}
                run: echo "mode=$MODE" >> "$GITHUB_OUTPUT"
                id: m
            outputs: {mode: "${{ steps.m.outputs.mode }}"}
        """
    assert mini.run(workflow, event="schedule").job("j").outputs["mode"] == "production"
    assert mini.run(workflow).job("j").outputs["mode"] == "none"
    with pytest.raises(WorkflowError, match="not one of"):
        mini.run(workflow, inputs={"publish": "staging"})
    with pytest.raises(WorkflowError, match="Unexpected inputs"):
        mini.run(workflow, inputs={"publsh": "none"})
    with pytest.raises(WorkflowError, match="does not run on 'pull_request'"):
        mini.run(workflow, event="pull_request")


# -- the real workflows: policy and lint ---------------------------------------------------------

def _doc(name: str) -> dict[str, Any]:
    return yaml.safe_load((WORKFLOWS / name).read_text(encoding="utf-8"))


def test_actions_are_pinned_to_full_commit_shas_with_a_version_comment() -> None:
    for path in sorted(WORKFLOWS.glob("*.yml")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if "uses:" in line:
                assert SHA_PIN.match(line), f"{path.name}: not pinned with a comment: {line}"


def test_least_privilege_and_no_expressions_in_scripts() -> None:
    for name in ("continuous-data.yml", "validate.yml"):
        doc = _doc(name)
        assert doc["permissions"] == {"contents": "read"}, name
        for job_id, job in doc["jobs"].items():
            assert "timeout-minutes" in job, f"{name}: job {job_id} has no timeout"
            writes = (job.get("permissions") or {}).get("contents") == "write"
            assert writes == (name == "continuous-data.yml" and job_id == "commit"), job_id
        for job_id, step in iter_run_steps(doc):
            # Inputs and outputs reach shells only through env (zizmor's template-injection).
            assert "${{" not in str(step.get("run", "")), f"{name}: {job_id}: {step.get('name')}"
            if str(step.get("uses", "")).startswith("actions/checkout@"):
                persist = step.get("with", {}).get("persist-credentials")
                assert persist is (job_id == "commit"), f"{name}: {job_id} checkout"
            if str(step.get("uses", "")).startswith("actions/setup-python@"):
                assert step["with"] == {"python-version": "3.11", "cache": "pip",
                                        "cache-dependency-path": "requirements.txt"}


def test_secrets_only_in_the_publishing_jobs_and_through_env() -> None:
    doc = _doc("continuous-data.yml")
    for job_id, job in doc["jobs"].items():
        text = yaml.safe_dump(job)
        if job_id in ("publish", "notify"):
            assert job["environment"] == "${{ needs.plan.outputs.environment }}"
            for step in job["steps"]:
                uses_secrets = "secrets." in yaml.safe_dump(step)
                assert not uses_secrets or set(step) >= {"env", "run"}, step.get("name")
        else:
            assert "secrets." not in text, job_id
    assert "secrets." not in (WORKFLOWS / "validate.yml").read_text(encoding="utf-8")


def test_schedule_dispatch_and_concurrency() -> None:
    doc = _doc("continuous-data.yml")
    on = doc[True]
    minute = on["schedule"][0]["cron"].split()[0]
    assert minute.isdigit() and int(minute) != 0, "cron at minute 0 is delayed the most"
    inputs = on["workflow_dispatch"]["inputs"]
    assert set(inputs) == {"since", "records", "max_records", "targets", "publish", "manifest"}
    assert inputs["targets"]["options"] == ["all", "zenodo", "kaggle"]
    assert inputs["publish"]["options"] == ["none", "sandbox", "production"]
    assert inputs["manifest"]["default"] == "data_manifest.yaml"
    assert doc["concurrency"] == {"group": "continuous-data", "cancel-in-progress": False}
    assert list(doc["jobs"]) == ["plan", "process", "publish", "notify", "commit"]
    validate = _doc("validate.yml")
    assert set(validate[True]) == {"pull_request", "push"}
    assert validate[True]["push"] == {"branches": ["main"]}


def test_every_pipeline_command_in_the_workflows_parses() -> None:
    assert validate_workflows(WORKFLOWS) == []


def test_sandbox_manifest_publishes_to_sandbox_zenodo() -> None:
    manifest = load(REPO / "manifests" / "sandbox.zenodo.yaml")
    assert manifest.destinations.zenodo is not None
    assert manifest.destinations.zenodo.url == "https://sandbox.zenodo.org"
    assert manifest.state_path.resolve() == REPO / "state" / "sandbox.json"
    assert manifest.notifications.feed_path.resolve() == REPO / "feed" / "sandbox.atom"


def _tool(name: str) -> str:
    path = SCRIPTS / name
    assert path.is_file(), f"{name} is pinned in requirements.txt but not installed at {path}"
    return str(path)


def test_workflows_match_githubs_schema() -> None:
    files = [str(p) for p in sorted(WORKFLOWS.glob("*.yml"))]
    done = subprocess.run([_tool("check-jsonschema"), "--builtin-schema",
                           "vendor.github-workflows", *files],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_zizmor_finds_nothing_of_high_severity() -> None:
    done = subprocess.run([_tool("zizmor"), "--offline", "--min-severity", "high",
                           "--format", "json", "--no-progress", str(WORKFLOWS)],
                          capture_output=True, text=True, check=False)
    findings = json.loads(done.stdout or "[]")
    assert findings == [], json.dumps(findings, indent=2)
    assert done.returncode == 0, done.stderr


# -- the real workflows, end to end against the sandbox ------------------------------------------

ENVIRONMENT_SECRETS = {"ZENODO_PUBLISH_TOKEN": ZENODO_TOKEN, "KAGGLE_USERNAME": KAGGLE_USERNAME,
                       "KAGGLE_KEY": KAGGLE_KEY, "WEBHOOK_SECRET": WEBHOOK_SECRET,
                       "DISPATCH_TOKEN": GITHUB_TOKEN}


def e2e_manifest(url: str, *, up: str = "") -> str:
    """data_manifest.yaml with every URL aimed at the sandbox, and every notification channel
    on (their URLs and secrets come from the environment's secrets, as in production). ``up``
    leads from the manifest's folder to the repository root, so that every copy shares
    state/state.json and feed/dataset.atom."""
    manifest = yaml.safe_load((REPO / "data_manifest.yaml").read_text(encoding="utf-8"))
    manifest["source"]["zenodo"]["url"] = url
    manifest["source"]["github"]["archive_url"] = url + "/{owner}/{repo}/tar.gz/{ref}"
    manifest["destinations"]["zenodo"]["url"] = url
    manifest["destinations"]["kaggle"].update(api_url=url,
                                              dataset=f"{KAGGLE_USERNAME}/code-images-e2e",
                                              status_timeout_seconds=60)
    manifest["notifications"] = {
        "feed": {"path": f"{up}feed/dataset.atom"},
        "webhooks": [{"url_env": "WEBHOOK_URL", "secret_env": "WEBHOOK_SECRET"}],
        "slack": {"url_env": "SLACK_WEBHOOK_URL"},
        "github_dispatch": [{"repo": "example-org/consumer", "event_type": "dataset-updated",
                             "token_env": "DISPATCH_TOKEN", "api_url": url}],
    }
    manifest["state"] = {"path": f"{up}state/state.json"}
    return "# The end-to-end tests' manifest: everything at the embedded sandbox.\n" + \
        yaml.safe_dump(manifest, sort_keys=False)


@dataclass
class World:
    """The "GitHub repository", its runner and the sandbox the pipeline talks to."""

    remote: GitRemote
    runner: WorkflowRunner
    sandbox: Sandbox
    root: Path
    race_before: set[str] = field(default_factory=set)

    def schedule(self) -> RunResult:
        return self.runner.run(CONTINUOUS, event="schedule")

    def dispatch(self, **inputs: str) -> RunResult:
        inputs = {"publish": "sandbox", "manifest": "manifests/e2e.yaml", **inputs}
        return self.runner.run(CONTINUOUS, event="workflow_dispatch", inputs=inputs)

    def state(self) -> dict[str, Any]:
        """The committed state, with its records read back from the records folder."""
        text = self.remote.read("state/state.json")
        assert text is not None, "no state committed"
        state = json.loads(text)
        state["records"] = {}
        listing = self.remote.read("state/state.records") or ""
        for name in listing.splitlines()[2:]:        # `git show` of a tree: a header, a blank
            if name.endswith("/"):                   # concepts/: the concept index
                continue
            for line in (self.remote.read(f"state/state.records/{name}") or "").splitlines():
                entry = json.loads(line)
                state["records"][entry.pop("id")] = entry
        return state

    @contextmanager
    def mutated(self, path: str, old: str, new: str) -> Iterator[None]:
        """Commit ``path`` with ``old`` replaced by ``new`` for the runs inside; restore it."""
        original = self.remote.read(path)
        assert original is not None and original.count(old) == 1, f"{old!r} not once in {path}"
        self.remote.commit({path: original.replace(old, new)}, f"Mutate {path}",
                           scratch=self.root / "scratch")
        try:
            yield
        finally:
            self.remote.commit({path: original}, f"Restore {path}", scratch=self.root / "scratch")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("workflows")
    box = Sandbox(seed=0, search_per_minute=None).start()
    try:
        remote = GitRemote(root / "origin.git")
        files: dict[str, str | Path] = {name: REPO / name for name in working_tree_files(REPO)}
        # The schedule runs with data_manifest.yaml, a dispatch with the manifest it names.
        files["data_manifest.yaml"] = e2e_manifest(box.url)
        files["manifests/e2e.yaml"] = e2e_manifest(box.url, up="../")
        files["manifests/production.yaml"] = REPO / "data_manifest.yaml"
        remote.commit(files, "Seed from the working tree", scratch=root / "scratch")
        secrets = {**ENVIRONMENT_SECRETS, "WEBHOOK_URL": f"{box.url}/hooks/ci",
                   "SLACK_WEBHOOK_URL": f"{box.url}/slack/team"}
        world = World(remote, None, box, root)  # type: ignore[arg-type]

        def race(job_id: str) -> None:
            """Someone pushes to main while the run works: the state commit must rebase."""
            if job_id in world.race_before:
                world.race_before.discard(job_id)
                remote.commit({"docs/concurrent.md": f"pushed before {job_id}\n"},
                              "A concurrent push", scratch=root / "scratch")

        world.runner = WorkflowRunner(
            remote, root / "runner", environments={"sandbox": secrets, "production": secrets},
            variables={"RECORDS_PER_SHARD": "5"}, before_job=race)
        yield world
    finally:
        box.stop()


@pytest.fixture(scope="module")
def first_run(world: World) -> RunResult:
    world.race_before.add("commit")
    return world.dispatch(targets="all")


@pytest.mark.slow
def test_dispatch_in_sandbox_mode_runs_every_job_publishes_and_commits(
        world: World, first_run: RunResult) -> None:
    run = first_run
    assert run.ok, run.report()
    assert set(run.results.values()) == {"success"}, run.report()
    plan = run.outputs["plan"]
    assert plan["mode"] == "sandbox" and plan["environment"] == "sandbox"
    assert plan["state_path"] == "state/state.json" and plan["has_work"] == "true"
    planned = int(plan["planned"])
    shards = json.loads(plan["shards"])
    assert planned > 5 and shards == list(range(1, len(shards) + 1)) and len(shards) >= 2
    legs = run.jobs["process"]
    assert [leg.matrix for leg in legs] == [{"shard": k} for k in shards]
    done = sum(int(leg.step("process").outputs["processed"]) for leg in legs)
    assert done == planned
    publish = run.job("publish")
    assert publish.environment == "sandbox" and run.job("plan").environment is None
    assert publish.step("Publish (dry run)").outcome == "skipped"
    assert publish.step("version").outputs["new_version"] == "true"
    version = publish.step("version").outputs["version"]
    assert publish.step("publish").outputs["zenodo_status"] == "published"
    assert publish.step("publish").outputs["kaggle_status"] == "published"
    assert "pipeline publish" in publish.summary

    state = world.state()                    # what the commit job pushed to the repository
    assert [v["version"] for v in state["versions"]] == [version]
    assert set(state["versions"][0]["published"]) == {"zenodo", "kaggle"}
    assert state["journal"] == {} and state["pending"] == {}
    assert sum(r["status"] == "done" for r in state["records"].values()) == planned
    assert version in (world.remote.read("feed/dataset.atom") or "")
    assert world.sandbox.kaggle.datasets[f"{KAGGLE_USERNAME}/code-images-e2e"].versions
    kinds = {d.kind for d in world.sandbox.hooks.deliveries()}
    assert kinds == {"webhook", "slack", "dispatch"}

    # The push race: the first push was rejected, the commit was rebased and pushed again.
    commit = run.job("commit")
    assert any("push attempt 1 of 5 was rejected" in a for a in commit.annotations), \
        commit.steps[-1].log
    subjects = world.remote.subjects(3)
    assert subjects[0].startswith("Update the state (run ") and subjects[1] == "A concurrent push"


@pytest.mark.slow
def test_a_quiet_day_commits_nothing_until_the_keep_alive_is_due(
        world: World, first_run: RunResult) -> None:
    head = world.remote.head()
    run = world.schedule()
    assert run.ok, run.report()
    plan = run.outputs["plan"]
    assert (plan["mode"], plan["manifest"], plan["environment"]) == (
        "production", "data_manifest.yaml", "production")
    assert run.outputs["plan"]["has_work"] == "false"
    assert run.outputs["plan"]["unfinished"] == "false"
    assert {k: run.results[k] for k in ("process", "publish", "notify")} == dict.fromkeys(
        ("process", "publish", "notify"), "skipped")
    assert run.results["commit"] == "success"
    assert "nothing to commit" in run.job("commit").summary
    assert world.remote.head() == head

    with world.mutated(CONTINUOUS, 'KEEPALIVE_DAYS: "50"', 'KEEPALIVE_DAYS: "0"'):
        run = world.schedule()
    assert run.ok, run.report()
    assert world.remote.read("state/heartbeat") is not None
    assert any(s.startswith("Keep the schedule alive") for s in world.remote.subjects(3))


@pytest.mark.slow
def test_a_dry_run_leaves_no_trace_then_the_schedule_publishes_version_2(
        world: World, first_run: RunResult) -> None:
    new = [str(r["id"]) for r in world.sandbox.zenodo.add_records(3)]
    head, deposits = world.remote.head(), len(world.sandbox.deposit.depositions())
    dry = world.dispatch(publish="none", records=" ".join(new), max_records="2")
    assert dry.ok, dry.report()
    assert dry.outputs["plan"]["planned"] == "2"          # --record x3 and --max-records 2
    publish = dry.job("publish")
    assert publish.environment is None                     # a dry run holds no secret
    assert publish.step("Publish").outcome == "skipped"
    assert "zenodo: upload" in publish.step("Publish (dry run)").log
    assert publish.step("Save the dataset versions").outcome == "skipped"
    assert dry.results["notify"] == "skipped" and dry.results["commit"] == "skipped"
    assert world.remote.head() == head
    assert len(world.sandbox.deposit.depositions()) == deposits

    run = world.schedule()
    assert run.ok, run.report()
    publish = run.job("publish")
    assert publish.environment == "production"
    assert publish.step("Restore the dataset versions").outputs["cache-hit"] == "false"
    assert publish.step("Restore the dataset versions").outputs["cache-matched-key"]
    assert publish.step("publish").outputs["zenodo_status"] == "published"
    versions = world.state()["versions"]
    assert len(versions) == 2 and set(versions[1]["published"]) == {"zenodo", "kaggle"}


@pytest.mark.slow
@pytest.mark.parametrize(("inputs", "message"), [
    ({"max_records": "ten"}, "max_records must be a positive number"),
    ({"records": "17400001 --since=1999"}, "records must be Zenodo record ids"),
    ({"manifest": "manifests/production.yaml"}, "sandbox mode needs a manifest whose "
                                                "destinations.zenodo.url is https://sandbox"),
])
def test_bad_inputs_are_refused_before_any_work(world: World, inputs: dict[str, str],
                                                message: str) -> None:
    head = world.remote.head()
    run = world.dispatch(**inputs)
    assert run.results["plan"] == "failure"
    assert any(message in a for a in run.job("plan").annotations), run.report()
    assert {r for k, r in run.results.items() if k != "plan"} == {"skipped"}
    assert world.remote.head() == head


@pytest.mark.slow
def test_a_renamed_cli_flag_fails_the_plan_before_anything_runs(world: World) -> None:
    head_state = world.remote.read("state/state.json")
    with world.mutated(CONTINUOUS, "detect --out work/plan.json", "detect --output work/plan.json"):
        run = world.dispatch()
        mutated = world.remote.read(CONTINUOUS)
    assert run.results["plan"] == "failure"
    step = run.job("plan").step("Validate the manifest and the workflows")
    assert step.outcome == "failure" and "--output" in step.log
    assert {r for k, r in run.results.items() if k != "plan"} == {"skipped"}
    assert world.remote.read("state/state.json") == head_state
    # ... and `pipeline validate` (run by validate.yml on every pull request) names it.
    folder = world.root / "mutated-workflows"
    folder.mkdir(exist_ok=True)
    (folder / "continuous-data.yml").write_text(mutated or "", encoding="utf-8")
    assert any("detect --output work/plan.json" in p for p in validate_workflows(folder))


@pytest.mark.slow
def test_a_lost_shard_artifact_fails_publishing_not_silently(world: World) -> None:
    world.sandbox.zenodo.add_records(2)
    with world.mutated(CONTINUOUS, "pattern: shard-*", "pattern: shards-*"):
        run = world.dispatch()
    assert run.results["process"] == "success" and run.results["publish"] == "failure"
    check = run.job("publish").step("Check that every planned record came back from its shard")
    assert check.outcome == "failure", run.report()
    assert run.results["notify"] == "skipped" and run.results["commit"] == "success"
    # The committed state keeps the planned records pending: the next run plans them again.
    assert len(world.state()["pending"]) == int(run.outputs["plan"]["planned"])


@pytest.mark.slow
def test_pull_request_validation_runs_every_check(world: World) -> None:
    """validate.yml on a pull request. Its "Test suite" step is skipped here (it would run this
    very test again, recursively); every other step runs as on GitHub."""
    runner = WorkflowRunner(world.remote, world.root / "pr-runner",
                            skip_steps={"Test suite": "it is the suite running this test"})
    run = runner.run(VALIDATE, event="pull_request")
    job = run.job("validate")
    assert run.ok, run.report()
    assert job.step("Test suite").outcome == "skipped"
    assert [s.outcome for s in job.steps if s.name != "Test suite"] == ["success"] * 8
    assert "| demo against the embedded sandbox | success |" in job.summary
    assert "| test suite | skipped |" in job.summary


def test_this_interpreter_satisfies_the_pins() -> None:
    """The runner checks requirements with pip offline; make a mismatch obvious on its own."""
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--no-index", "--dry-run",
                           "--disable-pip-version-check", "-r", str(REPO / "requirements.txt")],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
