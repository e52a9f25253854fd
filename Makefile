# segcli — `make demo` and `make test` set everything up themselves (idempotently) in $(VENV).
VENV ?= .venv
PY := $(VENV)/bin/python
SEGCLI := $(VENV)/bin/segcli
STAMP := $(VENV)/.installed
DEMO_DATA ?= data/synthetic
DEMO_RUN ?= runs/demo
DEMO_OUT ?= runs/demo-outputs
PYTEST_ARGS ?=
# pytest-xdist processes for make test, whole test files each (0: one process, as plain pytest)
TEST_WORKERS ?= 2

.PHONY: install test test-all demo bench clean help

help:
	@echo "make install   create $(VENV) and install segcli with its dependencies"
	@echo "make demo      synthetic data → train → eval → predict → export, printing where each result went"
	@echo "make test      the fast test suite (what CI runs)"
	@echo "make test-all  every test, the slow ones included"
	@echo "make bench     benchmarks, written to BENCHMARKS.md"

install: $(STAMP)

# Re-installs only when pyproject.toml changes. torch and torchvision are resolved together as a matched
# pair from the package index (never pin torch alone: see README, "Install").
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	$(PY) -c "import torch, torchvision, segmentation_models_pytorch, lightning, cv2, onnxruntime; print('installed: torch', torch.__version__, 'torchvision', torchvision.__version__)"
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -m "not slow" -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

test-all: $(STAMP)
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

demo: $(STAMP)
	@echo "== 1/5 prepare: synthetic dataset → $(DEMO_DATA)"
	$(SEGCLI) prepare synthetic --out $(DEMO_DATA) --overwrite
	@echo "== 2/5 train: Unet/resnet18 on the CPU (at most 4 minutes) → $(DEMO_RUN)"
	rm -rf $(DEMO_RUN)
	$(SEGCLI) train data.root=$(DEMO_DATA) trainer.max_epochs=10 trainer.max_time=00:00:04:00 --run-dir $(DEMO_RUN)
	@echo "== 3/5 eval: per-class IoU on the val split → $(DEMO_OUT)/eval.json"
	mkdir -p $(DEMO_OUT)
	$(SEGCLI) eval --ckpt $(DEMO_RUN)/checkpoints/best.ckpt --json $(DEMO_OUT)/eval.json
	@echo "== 4/5 predict: masks and overlays for the val images → $(DEMO_OUT)/predict"
	$(SEGCLI) predict --ckpt $(DEMO_RUN)/checkpoints/best.ckpt $(DEMO_DATA)/images/val --out $(DEMO_OUT)/predict > /dev/null
	@echo "== 5/5 export: ONNX, verified against the checkpoint → $(DEMO_OUT)/model.onnx"
	$(SEGCLI) export --ckpt $(DEMO_RUN)/checkpoints/best.ckpt --format onnx --out $(DEMO_OUT)/model.onnx
	@echo
	@echo "dataset     $(DEMO_DATA)/dataset.yaml"
	@echo "run         $(DEMO_RUN) (config.yaml, metrics.csv, checkpoints/best.ckpt, checkpoints/last.ckpt)"
	@echo "eval        $(DEMO_OUT)/eval.json"
	@echo "predictions $(DEMO_OUT)/predict (masks) and $(DEMO_OUT)/predict/overlays"
	@echo "onnx        $(DEMO_OUT)/model.onnx"

bench: $(STAMP)
	$(PY) benchmarks/run.py --out BENCHMARKS.md

clean:
	rm -rf runs/demo runs/demo-outputs .pytest_cache dist build
