# The two commands of the README:
#   make demo  - install, import Amazon Beauty, train + evaluate, print the table, serve the storefront
#   make test  - install (with Chromium for page tests), then run the default test suite
.PHONY: demo test test-all lint

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
	.venv/bin/ruff check src tests benchmarks
	.venv/bin/mypy src/soutui
