# tools/allocshim-flame alone, on hand-written collapsed stacks: widths, merging, order,
# root at the bottom, escaping, clipping, colours, and refusal of malformed input.
# usage: python3 test_flame.py PATH/TO/allocshim-flame
import os
import re
import subprocess
import sys
import tempfile
import unittest
import xml.etree.ElementTree as ET

RENDERER = None
NS = "{http://www.w3.org/2000/svg}"
INNER = 1200 - 2 * 10  # the default width less the renderer's margins


def render(stacks, *args):
    """Runs the renderer on stacks; returns (status, svg text, stderr)."""
    run = subprocess.run([RENDERER, *args], input=stacks, capture_output=True, text=True)
    return run.returncode, run.stdout, run.stderr


def frames(svg):
    """name -> list of (x, y, width, fill, label, tooltip), parsed as XML: unescaped
    markup in a name makes the parse, and so the test, fail."""
    found = {}
    for g in ET.fromstring(svg).iter(NS + "g"):
        tip = g.find(NS + "title").text
        rect, text = g.find(NS + "rect"), g.find(NS + "text")
        name = re.fullmatch(r"(.*): [\d,]+ \w+ \([\d.]+%\)", tip).group(1)
        found.setdefault(name, []).append((float(rect.get("x")), float(rect.get("y")),
                                           float(rect.get("width")), rect.get("fill"),
                                           None if text is None else text.text, tip))
    return found


class FlameTest(unittest.TestCase):
    def test_widths_are_shares_and_stacks_merge(self):
        # main holds 100 itself; a appears twice and is summed: 300 of 500 in all.
        rc, svg, err = render("main;a 200\nmain;b 100\nmain 100\nmain;a 100\n")
        self.assertEqual(rc, 0, err)
        f = frames(svg)
        self.assertEqual(len(f["a"]), 1, "the two stacks through a were not merged")
        self.assertAlmostEqual(f["all"][0][2], INNER, places=1)
        self.assertAlmostEqual(f["main"][0][2], INNER, places=1)
        self.assertAlmostEqual(f["a"][0][2], INNER * 300 / 500, places=1)
        self.assertAlmostEqual(f["b"][0][2], INNER * 100 / 500, places=1)
        self.assertIn("a: 300 bytes (60.00%)", f["a"][0][5])
        self.assertIn("total 500 bytes", svg)

    def test_order_and_root_at_the_bottom(self):
        rc, svg, err = render("root;zeta;leaf 10\nroot;alpha 30\nroot;mid 20\n")
        self.assertEqual(rc, 0, err)
        f = frames(svg)
        xs = [f[n][0][0] for n in ("alpha", "mid", "zeta")]
        self.assertEqual(xs, sorted(xs), "siblings are not in name order")
        self.assertAlmostEqual(f["alpha"][0][0], f["root"][0][0], places=2)
        self.assertAlmostEqual(f["leaf"][0][0], f["zeta"][0][0], places=2, msg="a callee starts at its caller")
        ys = [f[n][0][1] for n in ("all", "root", "zeta", "leaf")]
        self.assertEqual(ys, sorted(ys, reverse=True), "deeper frames are not drawn higher")

    def test_markup_in_names_and_title_is_escaped(self):
        names = ["operator<<(std::ostream&, int)", 'std::vector<int>::push_back "x"']
        rc, svg, err = render(f"main;{names[0]} 5\nmain;{names[1]} 5\n", "--title", "a < b & c")
        self.assertEqual(rc, 0, err)
        f = frames(svg)
        for n in names:
            self.assertIn(n, f)
        title = [t.text for t in ET.fromstring(svg).iter(NS + "text")][0]
        self.assertTrue(title.startswith("a < b & c - total 10 bytes"), title)

    def test_odd_bytes_in_names_do_not_stop_it(self):
        # Symbol tables hold bytes, not always UTF-8; and a C locale is no reason to fail.
        run = subprocess.run([RENDERER], input=b"main;caf\xe9 10\n", capture_output=True,
                             env={**os.environ, "LC_ALL": "C", "PYTHONUTF8": "0"})
        self.assertEqual(run.returncode, 0, run.stderr)
        self.assertIn("main", frames(run.stdout.decode("utf-8")))

    def test_names_are_clipped_to_their_box(self):
        long = "a_function_name_far_too_long_for_a_narrow_box"
        # 10% of 1180 px: room for some 15 of its 45 characters.
        rc, svg, err = render(f"main;{long} 10\nmain;big 90\nmain;speck 1\n")
        self.assertEqual(rc, 0, err)
        _, _, w, _, label, _ = frames(svg)[long][0]
        self.assertTrue(label and label.endswith("..") and long.startswith(label[:-2]), label)
        self.assertLessEqual(len(label) * 7.2, w, label)
        self.assertIsNone(frames(svg)["speck"][0][4], "a box of 12 px holds no name")
        self.assertEqual(frames(svg)["big"][0][4], "big", "a name that fits is written whole")
        for _, _, w, _, label, _ in sum(frames(svg).values(), []):
            if label:
                self.assertLessEqual(len(label) * 7.2, w, label)

    def test_colours_follow_the_name(self):
        _, one, _ = render("main;alpha 1\nmain;gamma 1\n")
        _, two, _ = render("x;y;gamma 7\nx;alpha 3\n")
        f1, f2 = frames(one), frames(two)
        self.assertEqual(f1["alpha"][0][3], f2["alpha"][0][3])
        self.assertEqual(f1["gamma"][0][3], f2["gamma"][0][3])
        self.assertNotEqual(f1["alpha"][0][3], f1["gamma"][0][3])

    def test_what_cannot_be_drawn_is_left_out(self):
        # A shrink (growth profiles) and a frame far under 0.1 px: no box, but the
        # tiny one's count stays in its caller.
        rc, svg, err = render("main;shrank -50\nmain;big 1000000\nmain;tiny 1\n")
        self.assertEqual(rc, 0, err)
        f = frames(svg)
        self.assertNotIn("shrank", f)
        self.assertNotIn("tiny", f)
        self.assertIn("main: 1,000,001 bytes", f["main"][0][5])
        rc, svg, err = render("")
        self.assertEqual(rc, 0, err)
        self.assertEqual(list(frames(svg)), [])
        self.assertIn("no stack has a positive count", svg)

    def test_malformed_input_is_refused_and_nothing_written(self):
        with tempfile.TemporaryDirectory() as d:
            out = os.path.join(d, "out.svg")
            rc, _, err = render("main;a 10\nmain;b ten\n", "-o", out)
            self.assertNotEqual(rc, 0)
            self.assertIn("line 2", err)
            self.assertFalse(os.path.exists(out))
            rc, _, err = render("main;a 10\n\n42\n", "-o", out)
            self.assertNotEqual(rc, 0)
            self.assertIn("line 3: a count with no stack", err)
            self.assertFalse(os.path.exists(out))
            rc, _, err = render("main;a 10\n", "-o", os.path.join(d, "no", "such", "dir.svg"))
            self.assertNotEqual(rc, 0)
            self.assertIn("No such file or directory", err)


if __name__ == "__main__":
    RENDERER = sys.argv.pop(1)
    unittest.main(verbosity=2)
