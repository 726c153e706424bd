# The two commands of the README:
#   make demo  - install, import Amazon Beauty, train + evaluate, print the table, serve the storefront
#   make test  - install (apt packages when missing, Chromium for page tests), then run the default test suite
# Also: make lint (ruff + mypy), make check-install (a core `pip install .` serves without torch),
#       make test-all (slow tests too). CI (.ci/run) runs setup, lint, check-install and test.
.PHONY: demo test test-all lint check-install course

demo:
	bash scripts/setup.sh
	.venv/bin/soutui demo

test:
	bash scripts/setup.sh --browser
	.venv/bin/python -m pytest -q

test-all:
	bash scripts/setup.sh --browser
	.venv/bin/python -m pytest -q -m "not gpu"

lint:
	.venv/bin/ruff check src tests benchmarks scripts course
	.venv/bin/mypy src/soutui benchmarks/*.py

check-install:
	bash scripts/check_serving_install.sh

# The course: execute every lab in fast mode (solutions filled in, checks strict), then build the
# offline site into course/_site/{zh,en}/ (course/README.md).
course:
	bash scripts/setup.sh
	.venv/bin/python -m pip install -q -e ".[train,course]"
	.venv/bin/python course/run_labs.py
