"""Summarise a ``py-spy record --format raw`` file: where the samples are, by function.

``python -m bench.profile_top FILE [--top 25] [--match TEXT]`` prints the functions with the
most samples on top of the stack (self) and anywhere in it (total), as % of all samples;
``--match`` keeps only stacks containing TEXT (e.g. ``group_send``).
"""

import argparse
import re
from collections import Counter

#: "function (path/to/file.py:123)" -> "function (file.py)": lines vary, functions do not.
FRAME = re.compile(r"^(?P<function>.*?) \((?P<path>.*?)(?::\d+)?\)$")


def frame_name(frame: str) -> str:
    match = FRAME.match(frame)
    if not match:
        return frame
    path = match["path"]
    short = "/".join(path.split("site-packages/")[-1].split("/")[-2:])
    return f"{match['function']} ({short})"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("file")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--match", help="only stacks that contain this text")
    args = parser.parse_args(argv)
    own, anywhere = Counter(), Counter()
    total = 0
    with open(args.file) as file:
        for line in file:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not count.isdigit() or (args.match and args.match not in stack):
                continue
            samples = int(count)
            total += samples
            frames = [frame_name(f) for f in stack.split(";")]
            if frames:
                own[frames[-1]] += samples
            for name in set(frames):
                anywhere[name] += samples
    print(f"{total} samples")
    for title, counter in (("self", own), ("total", anywhere)):
        print(f"\n{title}:")
        for name, samples in counter.most_common(args.top):
            print(f"  {100 * samples / total:5.1f}%  {name}")


if __name__ == "__main__":
    main()
