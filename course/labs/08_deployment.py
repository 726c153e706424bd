# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown] tags=["zh"]
# # 实验 8：部署与推理
#
# 对应种子文档 **2.5 模型部署**、**3.2.3 推理优化** 和 **问题 2（大规模下的效率）**。训练好的模型要变成一个
# 能回答请求的服务：导出成与框架无关的格式，压缩，打包，上线，再量一量它有多快。
#
# **目标**
# - 把一个小 SASRec 导出为 ONNX，用 ONNX Runtime 打分，确认和 PyTorch 一致；
# - 做 int8 动态量化，看模型变小多少、排序指标变了多少；
# - 把模型写成一个带校验和的服务包（bundle），用 `soutui serve --demo` 启动 API 并发请求；
# - 计时一批请求，读出 p50 / p95 延迟。

# %% [markdown] tags=["en"]
# # Lab 8: Deployment and inference
#
# Seed sections **2.5 (deployment)**, **3.2.3 (inference optimisation)** and **question 2 (efficiency at
# scale)**. A trained model has to become a service that answers requests: exported to a framework-neutral
# format, compressed, packaged, started, and timed.
#
# **Goals**
# - export a small SASRec to ONNX, score with ONNX Runtime and check it agrees with PyTorch;
# - quantise it to int8 and see how much smaller it gets and how much the ranking metrics move;
# - write the model into a checksummed serving bundle, start the API with `soutui serve --demo` and query it;
# - time a batch of requests and read off the p50 / p95 latency.

# %%
import sys
from pathlib import Path

sys.path.insert(0, str(Path.cwd().parent))
import json
import shutil
import subprocess
import tempfile
import time
import warnings

import matplotlib.pyplot as plt
import numpy as np
import onnx
import torch
from soutui.config import home_dir
from soutui.data.sequences import SequenceData, leave_one_out
from soutui.data.store import open_store
from soutui.evaluation.protocol import ranking_metrics, target_ranks
from soutui.models.registry import model_class
from soutui.models.sasrec_onnx import OnnxScorer, export_onnx
from soutui.serving.bundle_build import catalogue_in_index_order, write_bundle
from soutui.training.trainer import LoopTrainer

import checks
import labkit

DATA = labkit.setup()
torch.manual_seed(0)
torch.set_num_threads(1)
warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)  # the export's tracer notes
labkit.soutui("data", "import", "amazon-beauty", "--data-dir", str(DATA))
store = open_store(read_only=True)
items = store.read("amazon-beauty", "items")
data = SequenceData.from_events(store.read("amazon-beauty", "events"), items)
store.close()
split = leave_one_out(data)
print(f"{data.n_users:,} users, {data.n_items:,} items")

# %% [markdown] tags=["zh"]
# ## 训练一个小 SASRec
#
# 本实验关心的是部署，不是精度，所以模型故意很小：ID 嵌入、不用标题和属性。快速模式只训练 1 轮
# （d_model 32、1 层、序列长 20）；完整模式用默认结构训练 20 分钟。

# %% [markdown] tags=["en"]
# ## Train a small SASRec
#
# This lab is about deployment, not accuracy, so the model is deliberately small: item-id embeddings, no
# titles or attributes. The fast mode trains 1 epoch (d_model 32, 1 layer, sequences of 20); the full mode
# trains the default architecture for 20 minutes.

# %%
params = labkit.budget(
    dict(epochs=1, d_model=32, n_layers=1, max_len=20, valid_users=1000),
    dict(epochs=200, max_minutes=20, patience=8),
)
sasrec = model_class("sasrec")(use_text=False, use_attrs=False, use_timestamps=False, use_time=False,
                                cooc_neighbors=0, threads=1, **params).use_trainer(LoopTrainer(progress=False))
t0 = time.perf_counter()
sasrec.fit(split.train, split.valid)
print(f"trained in {time.perf_counter() - t0:.1f} s")

# %% [markdown] tags=["zh"]
# ## 导出 ONNX，量化成 int8
#
# `export_onnx` 把网络导出成 `sasrec.onnx`（输入：左侧补齐的历史序列 (B, T)；输出：对全部商品的分数
# (B, 商品数)），`quantize=True` 再用 ONNX Runtime 的 `quantize_dynamic` 写出 `sasrec.int8.onnx`：
# 权重存成 8 位整数，激活在推理时动态量化。`OnnxScorer` 只依赖 onnxruntime，服务进程不需要 PyTorch。
#
# 注意看哪些权重真的变成了 int8：`quantize_dynamic` 只量化 MatMul 的权重矩阵，商品嵌入表（查表用的 Gather，
# 也是最后给全部商品打分的那张表）仍是 float。小模型的字节几乎都在这张表里，所以文件几乎没变小；
# 完整模型还有标题、属性投影和共现表，docs/sasrec.md 里实测是 38 MB 降到 20 MB。

# %% [markdown] tags=["en"]
# ## Export to ONNX, quantise to int8
#
# `export_onnx` writes the network as `sasrec.onnx` (input: left-padded histories (B, T); output: scores over
# every item (B, n_items)); `quantize=True` also writes `sasrec.int8.onnx` with ONNX Runtime's
# `quantize_dynamic`: weights stored as 8-bit integers, activations quantised on the fly. `OnnxScorer` needs
# only onnxruntime, so the serving process does not load PyTorch.
#
# Look at which weights actually became int8: `quantize_dynamic` quantises MatMul weight matrices only; the
# item-embedding table (looked up by Gather, and the table every item is scored against) stays float. In a
# small model nearly all bytes are that table, so the file hardly shrinks; the full model also holds title and
# attribute projections and the co-occurrence tables, and docs/sasrec.md measured 38 MB down to 20 MB.

# %%
work = Path(tempfile.mkdtemp(prefix="lab08-"))
export_onnx(sasrec, work / "onnx", quantize=True)
sizes = {f.name: f.stat().st_size / 2**20 for f in sorted((work / "onnx").glob("*.onnx"))}
print({name: f"{mb:.2f} MB" for name, mb in sizes.items()})
by_type = {}
for init in onnx.load(str(work / "onnx" / "sasrec.int8.onnx")).graph.initializer:
    kind = onnx.helper.tensor_dtype_to_np_dtype(init.data_type).name
    by_type[kind] = by_type.get(kind, 0) + len(init.raw_data) / 2**20
print("int8 file, weights by type:", {k: f"{v:.2f} MB" for k, v in by_type.items()})
fp32, int8 = OnnxScorer(work / "onnx"), OnnxScorer(work / "onnx", int8=True)
sub = split.test.take(np.random.default_rng(1).permutation(len(split.test))[: labkit.budget(1000, len(split.test))])
sample = list(sub.histories[:256])
torch_scores, fp32_scores, int8_scores = sasrec.score(sample), fp32.score(sample), int8.score(sample)
print(f"max |PyTorch - ONNX float| = {np.abs(torch_scores - fp32_scores).max():.2e}")
print(f"max |ONNX float - ONNX int8| = {np.abs(fp32_scores - int8_scores).max():.2e}")

# %% [markdown] tags=["zh", "ex:8.1"]
# ### 练习 8.1：前 10 名还一样吗？
#
# 分数的绝对差不说明推荐列表变没变。写 `top10_agreement(a, b)`：`a`、`b` 是同一批用户的分数矩阵
# (用户数, 商品数)，返回每个用户两份前 10 名（分数最高的 10 个商品）重合比例的平均值，在 0 到 1 之间。

# %% [markdown] tags=["en", "ex:8.1"]
# ### Exercise 8.1: is the top 10 still the same?
#
# The absolute score difference does not say whether the recommended list changed. Write
# `top10_agreement(a, b)`: `a` and `b` are score matrices (users, items) for the same users; return the mean,
# over users, of the share of items the two top-10 lists (the 10 highest scores) have in common, between 0 and 1.

# %% tags=["exercise", "ex:8.1"]
def top10_agreement(a, b):
    top_a = np.argsort(a, axis=1)[:, :10]  # your code here: is this the top 10?
    top_b = np.argsort(b, axis=1)[:, :10]
    return float(np.mean([len(set(x) & set(y)) for x, y in zip(top_a, top_b, strict=True)]))


# %%
if checks.lab08_top10_agreement(top10_agreement):
    print(f"top-10 agreement, PyTorch vs ONNX float: {top10_agreement(torch_scores, fp32_scores):.3f}; "
          f"ONNX float vs int8: {top10_agreement(fp32_scores, int8_scores):.3f}")

# %% [markdown] tags=["zh"]
# 量化改变的是整张表的排序指标吗？在同一批测试用户上、全量排序下比较三个版本。

# %% [markdown] tags=["en"]
# Does quantisation move the ranking metrics? Compare the three versions on the same test users under full
# ranking.

# %%
versions = {"PyTorch": sasrec, "ONNX float": fp32, "ONNX int8": int8}
table = {}
for name, scorer in versions.items():
    t0 = time.perf_counter()
    table[name] = ranking_metrics(target_ranks(scorer, sub)[0], (10,))
    table[name]["seconds"] = time.perf_counter() - t0
for name, m in table.items():
    print(f"{name:10s} NDCG@10 {m['NDCG@10']:.4f}  HR@10 {m['HR@10']:.4f}  {len(sub):,} users in {m['seconds']:.1f} s")

# %% [markdown] tags=["zh"]
# ## 打包成服务包
#
# 服务包是一个目录：商品目录 `items.parquet`、每个模型一个子目录、`manifest.json`（记录模型、默认推荐器、
# 指标和每个文件的 sha256）。它先写到临时目录，写完整再原子地改名，所以服务进程永远读不到写了一半的包。
# `soutui bundle build` 是完整流程（评估基线、加入 SASRec 和搜索索引）；这里用同一个 `write_bundle`，
# 只放热门和刚导出的 ONNX SASRec，省掉搜索索引。

# %% [markdown] tags=["en"]
# ## Package it as a bundle
#
# A bundle is a directory: the catalogue `items.parquet`, one sub-directory per model, and `manifest.json`
# (the models, the default recommender, metrics and the sha256 of every file). It is written to a temporary
# directory and renamed atomically when complete, so a server never reads half a bundle. `soutui bundle build`
# is the whole pipeline (baselines evaluated, SASRec and a search index added); here the same `write_bundle`
# holds popularity and the ONNX SASRec just exported, without a search index.

# %%
popularity = model_class("popularity")().fit(data)
bundle = write_bundle(
    home_dir() / "bundles", "amazon-beauty", catalogue_in_index_order(items, data.item_ids),
    {"popularity": popularity}, default="sasrec",
    onnx_models={"sasrec": lambda path: shutil.copytree(work / "onnx", path)},
)
manifest = json.loads((bundle / "manifest.json").read_text())
print(bundle.name, "| models:", {n: m["runtime"] for n, m in manifest["models"].items()},
      "| files:", len(manifest["files"]))
done = subprocess.run([labkit._executable(), "bundle", "verify", str(bundle)], capture_output=True, text=True)
print("$ soutui bundle verify", bundle.name, "->", (done.stdout or done.stderr).strip().splitlines()[-1])

# %% [markdown] tags=["zh"]
# ## 启动 API
#
# 在本机回环地址的一个空闲端口上启动 `soutui serve --demo`（演示模式：只读接口不需要密钥），等 `/healthz`
# 就绪，再请求一个用户的推荐。

# %% [markdown] tags=["en"]
# ## Start the API
#
# Start `soutui serve --demo` (demo mode: read endpoints need no key) on a free loopback port, wait for
# `/healthz`, then ask for one user's recommendations.

# %%
server = labkit.Server("--demo", "--bundle", str(bundle))
get = server.get
health = server.health
print("healthz:", health)
user = str(data.user_ids[0])
answer = get(f"/v1/recommend/{user}?k=5")
print(f"user {user}: model {answer['model']}, history {answer['history_length']} items")
for item in answer["items"]:
    print(" ", item["item_id"], str(item.get("title"))[:70])

# %% [markdown] tags=["zh"]
# ## 计时一批请求
#
# 逐个发 `n` 个请求（每次换一个用户），记下每个请求从发出到收到完整回答的时间。这是一个客户端、
# 一个连接的“闭环”测量；固定发送速率、不掩盖排队延迟的开环压测见 `benchmarks/load_test.py`
# 和 docs/serving.md。

# %% [markdown] tags=["en"]
# ## Time a batch of requests
#
# Send `n` requests one after another (a different user each time) and record each one's time from sending
# to the complete answer. This is a closed-loop measurement with one client and one connection; the open-loop
# load test at a fixed rate, which does not hide queueing delay, is `benchmarks/load_test.py` (see
# docs/serving.md).

# %%
n = labkit.budget(100, 1000)
users = np.random.default_rng(2).choice(data.user_ids, n)
latencies_s = []
for u in users:
    t0 = time.perf_counter()
    get(f"/v1/recommend/{u}?k=10")
    latencies_s.append(time.perf_counter() - t0)
server.stop()
fig, ax = plt.subplots(figsize=(7, 3))
ax.hist(np.array(latencies_s) * 1000, bins=40, color="#4a7ab0")
ax.set(title=f"/v1/recommend latency, {n} sequential requests", xlabel="ms", ylabel="requests")
plt.tight_layout()
plt.show()

# %% [markdown] tags=["zh", "ex:8.2"]
# ### 练习 8.2：p95 延迟
#
# 服务的延迟目标通常写成分位数。用 `latencies_s`（单位：秒）算出第 95 百分位延迟，**以毫秒为单位**，
# 赋给 `p95_ms`。

# %% [markdown] tags=["en", "ex:8.2"]
# ### Exercise 8.2: p95 latency
#
# Latency targets are usually stated as percentiles. From `latencies_s` (seconds), compute the 95th percentile
# latency **in milliseconds** and assign it to `p95_ms`.

# %% tags=["exercise", "ex:8.2"]
p95_ms = float(np.mean(latencies_s))  # your code here

# %%
if checks.lab08_p95(p95_ms, latencies_s):
    print(f"p50 {np.percentile(latencies_s, 50) * 1000:.1f} ms, p95 {p95_ms:.1f} ms, "
          f"max {max(latencies_s) * 1000:.1f} ms over {n} requests")
shutil.rmtree(work, ignore_errors=True)

# %% [markdown] tags=["zh"]
# ## 小结
#
# ONNX 导出后的分数和 PyTorch 只差浮点舍入，前 10 名相同；int8 量化只改了 MatMul 权重，指标变化很小，
# 文件变小多少取决于模型里有多少字节在这些矩阵里。
# 快速模式的模型只训练 1 轮，数字只作演示。完整规模的实测见 docs/sasrec.md：完整模型在 22,363 个验证用户上，
# ONNX float 的 NDCG@10 0.071390 / HR@10 0.117292，和 PyTorch 相同（512 个用户上最大差 7.6e-6）；
# int8 为 0.071528 / 0.117560（NDCG 高 0.00014），文件 20 MB 对 38 MB。服务端延迟和吞吐的开环压测结果
# 见 docs/serving.md。

# %% [markdown] tags=["en"]
# ## Summary
#
# The exported ONNX scores differ from PyTorch only by floating-point rounding and give the same top 10; int8
# quantisation touches the MatMul weights only and moves the metrics very little; how much smaller the file gets
# depends on how many of its bytes sit in those matrices. The fast-mode model trains one epoch,
# so its figures only illustrate. Full-scale measurements are in docs/sasrec.md: for the full model on the
# 22,363 validation users, ONNX float NDCG@10 0.071390 / HR@10 0.117292, identical to PyTorch (max |diff|
# 7.6e-6 over 512 users); int8 0.071528 / 0.117560 (+0.00014 NDCG), 20 MB against 38 MB. The open-loop load
# test of the server's latency and throughput is in docs/serving.md.
