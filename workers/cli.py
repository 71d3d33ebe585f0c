"""``persona-stream``: the one console script (docs/contracts.md section 4).

Every failure a user can cause (bad flag, unreadable input, bad config,
unreachable broker) ends in one line on stderr and a non-zero exit, never a
traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import orjson

from workers import __version__, collector
from workers.config import InputFormat
from workers.core.records import PersonaCard
from workers.errors import InputError, Interrupted, PersonaStreamError, UsageError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


class _Version(argparse.Action):
    """``--version``, with how many per-event modules run compiled (worked out only when
    asked: it looks each module up)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> NoReturn:
        from workers.compiled import MODULES, compiled

        print(f"{parser.prog} {__version__} ({len(compiled())} of {len(MODULES)}"
              " per-event modules compiled)")
        parser.exit(0)


def _config(args: argparse.Namespace) -> Any:
    from workers.config import load

    return load(args.config)


def cmd_simulate(args: argparse.Namespace) -> int:
    from workers.io.progress import progress_mode
    from workers.simulation.generator import write_stream

    if args.profiles < 1:
        raise UsageError("--profiles must be at least 1")
    if args.days < 1:
        raise UsageError("--days must be at least 1")
    for path in (args.output, args.truth):
        if path and path != "-":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    stats = write_stream(args.output, profiles=args.profiles, seed=args.seed,
                         truth=args.truth, progress=progress_mode(args.quiet), days=args.days,
                         variant=args.variant)
    print(f"wrote {stats.events} lines for {stats.persons} persons to {args.output}",
          file=sys.stderr)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from workers.io.drive import run_files
    from workers.io.progress import progress_mode

    config = _config(args)
    start = None
    if args.state_in:
        from workers.state.saved import load_state

        start = load_state(args.state_in, config)
    summary = run_files(config, args.input, args.out, progress=progress_mode(args.quiet),
                        fmt=args.format, assume_sorted=args.assume_sorted, start=start)
    print(f"{summary['events_read']} events ({summary['events_invalid']} invalid, "
          f"{summary['events_duplicate']} duplicates), {summary['profiles']} profiles, "
          f"{summary['segments']} segments, {summary['segment_changes']} segment changes "
          f"in {summary['seconds']} s ({summary['events_per_second']:.0f} events/s) -> {args.out}",
          file=sys.stderr)
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from workers.io.progress import progress_mode
    from workers.replay import ReplayRequest, run_replay

    request = ReplayRequest(
        topic=args.topic, files=args.files, start=args.start, stop=args.stop, out=args.out,
        to_topic=args.to_topic, dry_run=args.dry_run, allow_live_topics=args.allow_live_topics,
        state_in=args.state_in, state_out=args.state_out, personas_from=args.personas_from,
        progress=progress_mode(args.quiet),
        metrics_port=args.metrics_port, format=args.format, assume_sorted=args.assume_sorted,
        forget_requests=not args.ignore_forget_requests)
    result = run_replay(_config(args), request)
    if result.report is not None:
        sys.stdout.write(result.report)
    s = result.summary
    target = args.out or (f"{args.to_topic}.*" if args.to_topic else "nothing (dry run)")
    print(f"replayed {s['events_replayed']} events in {s['seconds']} s "
          f"({s['events_per_second']:.0f} events/s): {s['segment_changes']} segment changes,"
          f" {s['identity_merges']} merges, {s['events_invalid']} dead letters since the"
          f" state began -> {target}", file=sys.stderr)
    return 0


def cmd_forget(args: argparse.Namespace) -> int:
    """One request for the person the identifiers name: to Kafka, or into a state file."""
    import uuid

    from workers.core.forget import ForgetRequest, junk_keys, request_hashes
    from workers.io.sinks import wall_clock

    config = _config(args)
    if any(not key.strip() for key in args.identifiers):
        raise UsageError("an IDENTIFIER is empty: give type:value (e.g. email:jo@mailbox.org)"
                         " or a bare value")
    junk = junk_keys(args.identifiers, config)
    if junk:
        raise UsageError(f"{junk[0]!r} is on the identity blocklist (identity.blocklist_values,"
                         " _patterns): no one's identifier, so nothing to forget; listing it"
                         " would drop the events of everyone who sends it")
    request = ForgetRequest(f"forget-{uuid.uuid4()}", request_hashes(args.identifiers, config),
                            wall_clock(), args.reason)
    if args.state is None:
        from workers.io.forget import send_request

        partition, offset = send_request(config, request)
        count = len(request.hashes)
        print(f"{request.request_id}: {count} identifier hash{'' if count == 1 else 'es'} ->"
              f" {config.kafka.forget_topic} partition {partition} offset {offset}")
        return 0
    from workers.state.saved import load_state, save_state

    pipeline = load_state(args.state, config)
    forgotten = [out.key for out in pipeline.forget(request)]
    save_state(pipeline, args.state)
    print(f"{request.request_id}: forgot {len(forgotten)} profile(s)"
          f"{' ' + ', '.join(str(k) for k in forgotten) if forgotten else ''}; {args.state}"
          f" now lists {len(pipeline.forgotten)} forgotten identifier hashes")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from workers.service.app import run_worker

    if args.initial_state:
        raise UsageError("--initial-state was removed: to start from history, produce it to"
                         " the input topic before going live (README \"Replay and backfill\")")
    return run_worker(_config(args))


def _fetch(url: str, token: str | None = None) -> Any:
    """GET a worker page as JSON (with ``token`` as its bearer); every failure is one line."""
    import urllib.error
    import urllib.request

    if not url.startswith(("http://", "https://")):
        raise UsageError(f"--url must be a worker's http:// address, e.g. http://worker:9464;"
                         f" got {url.rsplit('/', 1)[0]!r}")
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    try:
        request = urllib.request.Request(url, headers=headers)
        with urllib.request.urlopen(request, timeout=10) as response:
            return orjson.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            reason = orjson.loads(exc.read()).get("error", exc.reason)
        except (orjson.JSONDecodeError, AttributeError):
            reason = exc.reason
        raise UsageError(f"{url}: {reason}") from None
    except orjson.JSONDecodeError:
        raise InputError(f"{url} did not answer with JSON: is it a persona-stream worker?"
                         ) from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise InputError(f"cannot reach the worker at {url}: {exc}") from None


def cmd_personas(args: argparse.Namespace) -> int:
    from workers.io.folder import read_personas

    cards: list[PersonaCard] = (_fetch(f"{args.url.rstrip('/')}/personas.json") if args.url
                                else read_personas(args.source))
    if args.json:
        sys.stdout.write(orjson.dumps(cards, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        sys.stdout.write(format_personas(cards))
    return 0


def format_personas(cards: list[PersonaCard]) -> str:
    """A table a marketer can read in a terminal."""
    if not cards:
        return "no personas yet (the model is still warming up)\n"
    lines = [f"{'id':>3}  {'size':>7}  {'conv':>6}  {'rev/prof':>9}  {'engaged':>7}  "
             f"{'retained':>8}  name"]
    for card in sorted(cards, key=lambda c: -c["size"]):
        k = card["kpis"]
        lines.append(f"{card['segment_id']:>3}  {card['size']:>7}  {k['conversion_rate']:>6.1%}  "
                     f"{k['revenue_per_profile']:>9.2f}  {k['engagement_rate']:>7.1%}  "
                     f"{k['retention_rate']:>8.1%}  {card['name']}")
        top = ", ".join(f"{d['feature']} {d['value']:.2f} (all {d['population_value']:.2f})"
                        for d in card["distinguishing"][:3])
        lines.append(f"{'':>3}  {'':>7}  {top}")
    return "\n".join(lines) + "\n"


def cmd_profile(args: argparse.Namespace) -> int:
    key = args.id
    if args.url:
        from urllib.parse import quote

        # the admin listener's token, from where the worker reads it too (never a flag:
        # a command line is visible to every user of the machine)
        profile = _fetch(f"{args.url.rstrip('/')}/profile/{quote(key, safe='')}",
                         os.environ.get("PERSONA_STREAM_ADMIN__TOKEN") or None)
        sys.stdout.write(orjson.dumps(profile, option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0
    from workers.io.folder import PROFILES, find_profile

    profile = find_profile(args.source, key)
    if profile is None:
        raise UsageError(f"no profile with id or identifier {key!r} in "
                         f"{Path(args.source) / PROFILES}")
    sys.stdout.write(orjson.dumps(profile, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="persona-stream",
                     description="Real-time customer segmentation on Kafka: stitches identities,"
                     " learns segments online with river, emits segment changes.")
    parser.add_argument("--version", action=_Version, nargs=0, help="show the version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=_Parser)
    for add in (_add_simulate, _add_run, _add_worker, _add_replay, _add_forget, _add_personas,
                _add_profile, _add_evaluate):
        add(sub)
    return parser


Commands = Any  # argparse's subparsers action (a private class)
FORMATS = typing.get_args(InputFormat)


def _source_flags(p: argparse.ArgumentParser, url_help: str) -> None:
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--from", dest="source", metavar="DIR",
                       help="output folder of 'run' or 'replay'")
    where.add_argument("--url", metavar="URL", help=url_help)


def _format_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=FORMATS, metavar="FORMAT",
                   help="what the input is: " + ", ".join(FORMATS) + " (auto: told per record;"
                   " default: intake.format of the configuration); docs/formats/")


def _config_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE",
                   help="YAML configuration merged over the defaults; every key can also be"
                   " set as PERSONA_STREAM_<SECTION>__<KEY>")


def _add_simulate(sub: Commands) -> None:
    from workers.simulation.generator import VARIANTS

    p = sub.add_parser("simulate", help="write a realistic synthetic touchpoint stream",
                       description="Write a synthetic, time-ordered touchpoint stream (JSON lines)"
                       " with personas, cross-device journeys, junk identifiers, duplicates,"
                       " late and malformed events; deterministic by --seed.")
    p.add_argument("--profiles", type=int, required=True, metavar="N", help="number of persons")
    p.add_argument("--seed", type=int, default=1, metavar="S", help="random seed (default 1)")
    p.add_argument("--output", required=True, metavar="FILE",
                   help="output file ('-' for stdout, .gz to compress)")
    p.add_argument("--truth", metavar="FILE",
                   help="also write the ground truth: each identifier's person and persona")
    p.add_argument("--days", type=int, default=28, help="days of event time (default 28)")
    p.add_argument("--variant", choices=VARIANTS, default="default",
                   help="changers: a fifth change persona halfway (the truth says when);"
                   " one_channel: a web-only shop; outliers: a few bot-like, big-spending"
                   " people; many_behaviours: seven personas (default: five)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=cmd_simulate)


def _add_run(sub: Commands) -> None:
    p = sub.add_parser("run", help="run the whole pipeline over files, no Kafka needed",
                       description="Run the whole pipeline in one process over JSON-lines input"
                       " and write segment_changes.jsonl, identity_merges.jsonl, profiles.jsonl,"
                       " personas.json, dead_letters.jsonl and summary.json into --out.")
    p.add_argument("input", nargs="+", metavar="INPUT",
                   help="JSON-lines file(s), '-' for stdin, .gz accepted")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--state-in", metavar="FILE",
                   help="start from a saved state (its profiles, model and forget list)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    _sorted_flag(p)
    _format_flag(p)
    _config_flag(p)
    p.set_defaults(func=cmd_run)


def _sorted_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--assume-sorted", action="store_true",
                   help="the files are in event-time order already, in the order given: skip"
                   " the sort (by default every record is sorted by event time first, out of"
                   " core beyond 64 MiB)")


def _add_worker(sub: Commands) -> None:
    p = sub.add_parser("worker", help="run a Kafka stream worker (run several to scale out)",
                       description="Consume touchpoints from Kafka and produce segment changes,"
                       " identity merges, persona cards and dead letters.")
    # a flag of earlier versions, kept to say what to do instead
    p.add_argument("--initial-state", metavar="FILE", help=argparse.SUPPRESS)
    _config_flag(p)
    p.set_defaults(func=cmd_worker)


def _add_replay(sub: Commands) -> None:
    p = sub.add_parser("replay", help="backfill: replay history through the pipeline",
                       description="Replay a topic range or recorded files, in event-time order,"
                       " through the pipeline into an output folder, separate topics or nowhere"
                       " (--dry-run), without touching live workers or their consumer groups.")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--topic", metavar="TOPIC", help="Kafka topic to replay")
    source.add_argument("--files", nargs="+", metavar="FILE",
                        help="JSON-lines file(s) to replay, merged in event-time order"
                        " (.gz accepted)")
    p.add_argument("--from", dest="start", metavar="BOUND",
                   help="first record of --topic: an RFC 3339 time (first record stamped at or"
                   " after it, per partition) or offset:N (default: the beginning)")
    p.add_argument("--to", dest="stop", metavar="BOUND",
                   help="end of --topic, exclusive: an RFC 3339 time or offset:N (default: the"
                   " end offsets when the replay starts)")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--out", metavar="DIR", help="output folder (the files of 'run')")
    target.add_argument("--to-topic", metavar="PREFIX",
                        help="produce to PREFIX.segment-changes, PREFIX.identity-merges and"
                        " PREFIX.dlq")
    target.add_argument("--dry-run", action="store_true",
                        help="process everything, emit nothing, print what would change")
    p.add_argument("--allow-live-topics", action="store_true",
                   help="let --to-topic write to topics the live workers use")
    p.add_argument("--state-in", metavar="FILE", help="start from a saved pipeline state")
    p.add_argument("--state-out", metavar="FILE",
                   help="save the end state (events still in the reorder window stay in it,"
                   " unflushed, so the next replay or worker continues exactly)")
    p.add_argument("--personas-from", metavar="DIR",
                   help="with --dry-run: compare with the personas.json in DIR")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--metrics-port", type=int, metavar="PORT",
                   help="serve Prometheus metrics (replay progress included) while replaying")
    _sorted_flag(p)
    p.add_argument("--ignore-forget-requests", action="store_true",
                   help="DANGEROUS: do not read kafka.forget_topic and the live forget list"
                   " first, so a forgotten person's history comes back (the forget list of"
                   " --state-in still applies)")
    _format_flag(p)
    _config_flag(p)
    p.set_defaults(func=cmd_replay)


def _add_forget(sub: Commands) -> None:
    p = sub.add_parser("forget", help="forget a person (GDPR article 17)",
                       description="Forget the person these identifiers name: their profile,"
                       " every identifier of their group and derived state go, subscribers"
                       " get a forget/v1 record, and no later event or replay brings them"
                       " back. Sends one request to kafka.forget_topic (the workers apply it),"
                       " or with --state applies it to a saved state file.")
    p.add_argument("identifiers", nargs="+", metavar="IDENTIFIER",
                   help="type:value (email:jo@mailbox.org), or a bare value of any type")
    p.add_argument("--reason", default="", metavar="TEXT",
                   help="why, carried to forget/v1 (no personal data)")
    p.add_argument("--state", metavar="FILE",
                   help="apply the request to this state file (saved by replay --state-out)"
                   " instead of sending it")
    _config_flag(p)
    p.set_defaults(func=cmd_forget)


def _add_personas(sub: Commands) -> None:
    p = sub.add_parser("personas", help="print the current persona cards",
                       description="Print the persona cards of a run's output folder, or of a"
                       " running deployment, as a table.")
    _source_flags(p, "a running worker's web address, e.g. http://worker:9464")
    p.add_argument("--json", action="store_true", help="print the cards as JSON")
    p.set_defaults(func=cmd_personas)


def _add_profile(sub: Commands) -> None:
    p = sub.add_parser("profile", help="print one profile, by profile id or any identifier",
                       description="Look a profile up by profile id or identifier (value or"
                       " type:value) and print its snapshot.")
    p.add_argument("id", metavar="ID", help="profile id, identifier value, or type:value")
    _source_flags(p, "the owner worker's admin listener, e.g. http://127.0.0.1:9465 (a worker"
                  " that does not own the state says so); its token, if it has one, is read"
                  " from PERSONA_STREAM_ADMIN__TOKEN")
    p.set_defaults(func=cmd_profile)


def _add_evaluate(sub: Commands) -> None:
    p = sub.add_parser("evaluate", help="score a run's segments against simulate's truth",
                       description="Score the output folder of 'run' or 'replay --out' over a"
                       " 'simulate' stream against its ground truth: ARI, segment ids that"
                       " changed meaning across model versions, behaviours that moved to"
                       " another id, behaviours with a segment of their own, behaviour"
                       " changers in their new segment (and how many of their profiles were"
                       " never seen after the change), moves per steady person, empty"
                       " segments and persona-card values outside their feature's range.")
    p.add_argument("--truth", required=True, metavar="FILE",
                   help="the truth file of 'simulate --truth'")
    p.add_argument("--from", dest="source", required=True, metavar="DIR",
                   help="output folder of 'run' or 'replay --out'")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.set_defaults(func=cmd_evaluate)


def cmd_evaluate(args: argparse.Namespace) -> int:
    import dataclasses

    from workers.simulation.generator import load_truth
    from workers.simulation.quality import evaluate_run

    try:
        truth = load_truth(args.truth)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read the truth file {args.truth}: {exc}") from None
    folder = Path(args.source)
    for name in ("profiles.jsonl", "segment_changes.jsonl", "personas.json"):
        if not (folder / name).is_file():
            raise InputError(f"{folder / name} is missing: --from takes the output folder of"
                             " 'run' or 'replay --out'")
    try:
        figures = dataclasses.asdict(evaluate_run(folder, truth))
    except (KeyError, TypeError, orjson.JSONDecodeError) as exc:
        raise InputError(f"{folder} does not match the truth file {args.truth}: {exc!r}"
                         ) from None
    if args.json:
        sys.stdout.write(orjson.dumps(figures, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        width = max(map(len, figures))
        sys.stdout.write("".join(f"{name:<{width}}  {value}\n" for name, value in figures.items()))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; every failure a user can cause is one line and its exit code."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # argparse would name "persona-stream", not the command given the flag
        parser.exit(2, f"persona-stream {args.command}: error: unrecognized arguments: "
                    f"{' '.join(unknown)} (see --help)\n")
    collector.tune()
    try:
        return int(args.func(args))
    except PersonaStreamError as exc:
        print(f"persona-stream {args.command}: {_prefix(exc)}{exc}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:
        # the reader went away (`... | head -1`): stop quietly, as Unix tools do; stdout is
        # pointed at /dev/null so the interpreter's final flush does not complain either
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:  # a file we were told to write cannot be written
        where = f" {exc.filename}" if exc.filename else ""
        print(f"persona-stream {args.command}: error:{where}: {exc.strerror or exc}",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"persona-stream {args.command}: interrupted", file=sys.stderr)
        return Interrupted.exit_code


def _prefix(exc: PersonaStreamError) -> str:
    """``error: `` for a failure; an interruption is not one (it says what was kept)."""
    return "" if isinstance(exc, Interrupted) else "error: "


if __name__ == "__main__":
    sys.exit(main())
