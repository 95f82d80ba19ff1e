"""The README's examples run and print what the README says."""
import doctest
import pathlib

import fattr

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_readme_examples():
    result = doctest.testfile(str(ROOT / "README.md"), module_relative=False, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_public_docstring_examples():
    finder, runner = doctest.DocTestFinder(), doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    attempted = 0
    for name in fattr.__all__:
        obj = getattr(fattr, name)
        for test in finder.find(obj, name, globs={}):
            runner.run(test)
            attempted += len(test.examples)
    assert attempted > 0 and runner.failures == 0, runner.summarize()
