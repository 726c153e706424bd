# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown] tags=["zh"]
# # 实验 6：调参与验证
#
# 对应种子文档 **3.2.2 模型评估与验证**。超参数要在验证集上选，测试集只在最后读一次；
# 一个数字要带上它随随机种子波动的范围，才能拿去和别的模型比。
#
# **目标**
# - 用 `soutui tune`（Optuna，TPE 采样）在验证集上搜索 SASRec 的超参数，画出每次试验的验证 NDCG@10；
# - 从训练记录 `record.json` 里读出每一轮的验证曲线，看早停在哪一轮停下、为什么；
# - 亲手做一次“在测试集上调参”，量一量它把估计抬高了多少；
# - 换几个随机种子重复训练，用 scipy 给出均值 ± 标准差和 95% 置信区间。

# %% [markdown] tags=["en"]
# # Lab 6: Tuning and validation
#
# Seed section **3.2.2 (model evaluation and validation)**. Hyper-parameters are chosen on the validation
# split and the test split is read once, at the end; a figure must carry its spread over random seeds before
# it can be compared with another model's.
#
# **Goals**
# - search SASRec's hyper-parameters on validation with `soutui tune` (Optuna, TPE sampler) and plot each
#   trial's validation NDCG@10;
# - read the per-epoch validation curve from the run record `record.json` and see where early stopping
#   stopped, and why;
# - tune on the test split once, on purpose, and measure how much that inflates the estimate;
# - retrain over several random seeds and report mean ± sd and a 95% confidence interval with scipy.

# %%
import sys
from pathlib import Path

sys.path.insert(0, str(Path.cwd().parent))
import tempfile
import time

import matplotlib.pyplot as plt
import numpy as np
import optuna
import pandas as pd
import torch
from scipy import stats
from soutui.data.sequences import SequenceData, leave_one_out
from soutui.data.store import open_store
from soutui.evaluation.protocol import ranking_metrics, target_ranks
from soutui.models.registry import model_class
from soutui.training.trainer import LoopTrainer

import checks
import labkit

DATA = labkit.setup()
torch.set_num_threads(1)
optuna.logging.set_verbosity(optuna.logging.WARNING)
t_lab = time.perf_counter()

# %% [markdown] tags=["zh"]
# ## 数据：Amazon Beauty 的一个用户样本
#
# 调参要把同一个模型训练很多次。为了让快速模式在两核机器上几分钟内跑完，我们随机抽一部分 Beauty 用户
# （快速模式 800 个，完整模式全部 22,363 个），把他们的行为写成 CSV，用通用导入器
# `soutui data import generic` 导入成一个新数据集 `beauty-lab6`。没有给商品文件，所以模型只用商品 ID，
# 不需要先给标题算文本向量。划分仍是留一法：每个用户最后一次行为是测试，倒数第二次是验证。

# %% [markdown] tags=["en"]
# ## Data: a sample of Amazon Beauty users
#
# Tuning trains the same model many times. So that the fast mode finishes in minutes on two cores, we draw a
# random sample of Beauty users (800 in fast mode, all 22,363 in full mode), write their events as a CSV and
# import it as a new dataset `beauty-lab6` with the generic importer `soutui data import generic`. No item file
# is given, so the models use item ids only and no title needs encoding first. The split is still
# leave-one-out: each user's last event is the test target, the one before it the validation target.

# %%
work = Path(tempfile.mkdtemp(prefix="lab06-"))
raw = pd.read_csv(DATA / "amazon-beauty" / "beauty_interactions.tsv", sep="\t")
n_users = labkit.budget(800, raw.user_id.nunique())
keep = np.random.default_rng(0).choice(raw.user_id.unique(), n_users, replace=False)
sample = raw[raw.user_id.isin(keep)]
# a few reviews have no timestamp; the position keeps each user's order within a day
sample = sample.assign(ts=sample.timestamp.fillna(sample.timestamp.min()).astype("int64") + sample.position)
sample[["user_id", "item_id", "ts"]].to_csv(work / "events.csv", index=False)
done = labkit.soutui("data", "import", "generic", "--events", str(work / "events.csv"), "--name", "beauty-lab6",
                     "--event-type", "purchase", "--no-pseudonymize", "--replace")
print("kept:", done["rows_kept"], "| quarantined:", done["quarantined"])
store = open_store(read_only=True)
data = SequenceData.from_events(store.read("beauty-lab6", "events"), store.read("beauty-lab6", "items"))
store.close()
print(f"{data.n_users:,} users, {data.n_items:,} items")

# %% [markdown] tags=["zh"]
# ## 用 Optuna 在验证集上调参
#
# `soutui tune` 每次试验从搜索空间里取一组超参数（`d_model`、层数、dropout、学习率……），在训练集上训练，
# 用**验证集**的 NDCG@10 打分；测试集一次都不读。试验记录存在 `$SOUTUI_HOME/tune.db`（SQLite），中断后
# 用同一个 `--study` 名字可以接着搜；最好的一组参数写成 TOML，`soutui train --config` 直接能用。
# `--set` 固定每次试验都一样的参数：这里关掉标题和属性，序列截到 20，快速模式每次只训练 2 轮。

# %% [markdown] tags=["en"]
# ## Tune on validation with Optuna
#
# Each trial of `soutui tune` draws hyper-parameters from the search space (`d_model`, layers, dropout,
# learning rate...), trains on the training split and scores with **validation** NDCG@10; the test split is
# never read. Trials are stored in `$SOUTUI_HOME/tune.db` (SQLite), so the same `--study` name resumes an
# interrupted search; the best parameters are written as TOML that `soutui train --config` accepts. `--set`
# fixes what every trial shares: no titles or attributes, sequences cut to 20, and 2 epochs per trial in fast
# mode.

# %%
trials = labkit.budget(3, 30)
fixed = ["use_text=false", "use_attrs=false", "max_len=20", "cooc_neighbors=0", "threads=1",
         f"epochs={labkit.budget(2, 200)}", f"max_minutes={labkit.budget(0, 10)}", "patience=5"]
tuned = labkit.soutui("tune", "--dataset", "beauty-lab6", "--trials", str(trials), "--study", "lab6",
                      *[a for kv in fixed for a in ("--set", kv)])
print(f"best validation NDCG@10 {tuned['best_value']:.4f} after {tuned['trials']} trials")
shared = {kv.split("=")[0] for kv in fixed}
print("tuned:", {k: round(v, 4) if isinstance(v, float) else v
                 for k, v in tuned["best_params"].items() if k not in shared})
study = optuna.load_study(study_name="lab6", storage=tuned["storage"])
runs = study.trials_dataframe(attrs=("number", "value", "state"))
print(runs.to_string(index=False))

# %% [markdown] tags=["zh", "ex:6.1"]
# ### 练习 6.1：到第 n 次试验为止的最好成绩
#
# 调参曲线通常画“到目前为止最好的验证分数”。写 `best_so_far(values)`：`values` 是按试验顺序排列的验证
# NDCG@10（被剪枝或失败的试验是 `NaN`），返回同样长度的列表，第 i 个是前 i+1 次试验里最好的分数；
# 还没有任何完成的试验时是 `NaN`。

# %% [markdown] tags=["en", "ex:6.1"]
# ### Exercise 6.1: the best score up to trial n
#
# A tuning curve usually plots "the best validation score so far". Write `best_so_far(values)`: `values` are
# the validation NDCG@10 of the trials in order (a pruned or failed trial is `NaN`); return a list of the same
# length whose i-th entry is the best score among the first i+1 trials, `NaN` while no trial has completed.

# %% tags=["exercise", "ex:6.1"]
def best_so_far(values):
    return list(np.maximum.accumulate(values))  # your code here: what does NaN do to this?


# %%
if checks.lab06_best_so_far(best_so_far):
    values = runs["value"].to_numpy(dtype=float)
    fig, ax = plt.subplots(figsize=(7, 3))
    ax.plot(runs["number"], values, "o", label="trial")
    ax.step(runs["number"], best_so_far(values), where="post", label="best so far")
    ax.set(xlabel="trial", ylabel="validation NDCG@10", title="soutui tune (Optuna TPE) on beauty-lab6")
    ax.legend()
    plt.tight_layout()
    plt.show()

# %% [markdown] tags=["zh"]
# ## 早停：读训练曲线
#
# 用调出来的参数正式训练一次。训练循环每轮结束在验证集上算 NDCG@10；比历史最好值高就把这一轮的权重存为
# “最好”，否则记一次“没有进步”，连续 `patience` 次没有进步就停，最后恢复最好那一轮的权重。
# 每一轮的记录在 `record.json` 的 `training.history` 里。`stopped` 说明为什么停：`patience` 是早停触发，
# `epochs` 是轮数预算用完。快速模式只给 6 轮，曲线可能还在上升，早停来不及触发；完整模式一直训练到
# patience 触发（或 20 分钟用完）。

# %% [markdown] tags=["en"]
# ## Early stopping: read the training curve
#
# Train once with the tuned parameters. After every epoch the loop computes validation NDCG@10; a new best
# keeps that epoch's weights as "best", anything else counts one "no improvement", and `patience` of those in
# a row stop training; the best epoch's weights are restored at the end. Each epoch's row is in
# `training.history` of `record.json`. `stopped` says why training ended: `patience` means early stopping
# triggered, `epochs` that the epoch budget ran out. The fast mode allows 6 epochs, so the curve may still be
# rising and early stopping has no chance to act; the full mode trains until patience triggers (or 20 minutes
# pass).

# %%
patience = labkit.budget(2, 5)
record = labkit.soutui("train", "--dataset", "beauty-lab6", "--config", tuned["config"], "--no-onnx",
                       "--set", f"epochs={labkit.budget(6, 200)}", "--set", f"patience={patience}",
                       "--set", f"max_minutes={labkit.budget(0, 20)}")
history = record["training"]["history"]
print(f"stopped: {record['training']['stopped']}, best epoch {record['training']['best_epoch']}")
print("validation NDCG@10 per epoch:", [h["valid"] for h in history])
fig, ax = plt.subplots(figsize=(7, 3))
ax.plot([h["epoch"] for h in history], [h["valid"] for h in history], "o-", label="validation NDCG@10")
ax.axvline(record["training"]["best_epoch"], color="grey", ls="--", label="best epoch")
ax.set(xlabel="epoch", ylabel="NDCG@10", title="early stopping on validation", xticks=[h["epoch"] for h in history])
ax.legend()
plt.tight_layout()
plt.show()

# %% [markdown] tags=["zh", "ex:6.2"]
# ### 练习 6.2：早停会停在哪一轮？
#
# 写 `stop_epoch(valid, patience)`：`valid` 是第 1、2、3……轮的验证分数，按上面的规则（严格变大才算进步，
# 连续 `patience` 轮没有进步就停）返回 `(停下的轮次, 最好的轮次)`；如果一直没触发早停，停下的轮次就是
# 最后一轮。轮次从 1 开始数。

# %% [markdown] tags=["en", "ex:6.2"]
# ### Exercise 6.2: at which epoch does early stopping stop?
#
# Write `stop_epoch(valid, patience)`: `valid` holds the validation scores of epochs 1, 2, 3...; with the rule
# above (only a strictly larger score is an improvement; `patience` epochs in a row without one stop training)
# return `(epoch stopped, best epoch)`; when early stopping never triggers, the epoch stopped is the last one.
# Epochs count from 1.

# %% tags=["exercise", "ex:6.2"]
def stop_epoch(valid, patience):
    best = int(np.argmax(valid)) + 1  # your code here
    return len(valid), best


# %%
if checks.lab06_stop_epoch(stop_epoch):
    stopped, best = stop_epoch([h["valid"] for h in history], patience)
    print(f"your rule: stop after epoch {stopped}, best {best}; the engine: {record['training']['epoch']}, "
          f"{record['training']['best_epoch']}")

# %% [markdown] tags=["zh"]
# ## 为什么测试集只读一次
#
# 假设我们偷懒，直接在测试集上比较一组配置，挑测试分数最高的那个报出来。这个数字还能代表模型在新用户上的
# 表现吗？做个实验：用 item-kNN 的 24 组参数（很快，每组不到一秒），算出每组在每个测试用户上的 NDCG@10。
# 然后把测试用户随机分成两半：在 A 半上挑最好的配置，报告它在 A 半上的分数（“在测试集上调参”），
# 再看同一个配置在没碰过的 B 半上的分数（诚实的估计）。重复 200 次随机划分。

# %% [markdown] tags=["en"]
# ## Why the test split is read once
#
# Suppose we cut a corner and compare a set of configurations directly on the test split, then report the best
# test score. Does that figure still tell how the model does on new users? An experiment: 24 item-kNN
# configurations (fast, well under a second each), each scored per test user with NDCG@10. Then split the test users at
# random into halves: pick the best configuration on half A and report its score on A ("tuning on test"), then
# the same configuration's score on the untouched half B (the honest estimate). Repeat over 200 random splits.

# %%
split = leave_one_out(data)
grid = [dict(neighbors=n, window=w, similarity=sim, history_half_life=h) for n in (5, 50, 400) for w in (1, 5)
        for sim in ("cosine", "bm25") for h in (0.5, 4.0)]
per_user = []
for params in grid:
    knn = model_class("itemknn")(**params).fit(split.train)
    ranks = target_ranks(knn, split.test)[0]
    per_user.append(np.where(ranks < 10, 1.0 / np.log2(ranks + 2.0), 0.0))  # NDCG@10 of one target
per_user = np.array(per_user)  # (configs, test users)
print("mean test NDCG@10 per configuration:", np.round(per_user.mean(axis=1), 4))
rng = np.random.default_rng(0)
on_a, on_b = [], []
for _ in range(200):
    half = rng.permutation(per_user.shape[1]) < per_user.shape[1] // 2
    pick = int(np.argmax(per_user[:, half].mean(axis=1)))
    on_a.append(per_user[pick, half].mean())
    on_b.append(per_user[pick, ~half].mean())
print(f"picked on A, scored on A: {np.mean(on_a):.4f}; the same pick scored on B: {np.mean(on_b):.4f} "
      f"(optimism {np.mean(on_a) - np.mean(on_b):+.4f} = {np.mean(on_a) / np.mean(on_b) - 1:+.0%}; "
      f"A above B in {np.mean(np.array(on_a) > np.array(on_b)):.0%} of splits)")

# %% [markdown] tags=["zh"]
# 在 A 上挑、在 A 上报的分数平均比 B 上高：挑选本身把噪声当成了本事。配置越多、测试用户越少，抬高得越多；
# 对几十次 Optuna 试验来说，这个偏差可以比两个模型之间的真实差距还大。所以流程是：在验证集上调参和早停，
# 调完后在测试集上评估**一次**，报出那一个数，之后不再回头改。

# %% [markdown] tags=["en"]
# Picked on A and reported on A averages higher than on B: the selection mistook noise for skill. The more
# configurations and the fewer test users, the larger the inflation; over dozens of Optuna trials it can exceed
# the real gap between two models. Hence the procedure: tune and early-stop on validation, then evaluate on test
# **once**, report that figure, and do not go back.

# %% [markdown] tags=["zh"]
# ## 随机种子带来的波动
#
# 同样的参数、同样的数据，换一个随机种子（初始化、打乱顺序、dropout），结果就会变。用调好的参数训练几次，
# 每次换 `seed`，在测试集上算 NDCG@10。快速模式每次只训练 2 轮、3 个种子；完整模式 5 个种子、早停。

# %% [markdown] tags=["en"]
# ## The spread over random seeds
#
# Same parameters, same data, another random seed (initialisation, shuffling, dropout) and the figure moves.
# Train the tuned parameters a few times, each with another `seed`, and score test NDCG@10. Fast mode trains 2
# epochs for 3 seeds; full mode 5 seeds with early stopping.

# %%
best_params = {k: v for k, v in tuned["best_params"].items() if k not in ("epochs", "patience", "max_minutes")}
seeds = list(range(labkit.budget(3, 5)))
seed_ndcg = []
for seed in seeds:
    sasrec = model_class("sasrec")(**best_params, seed=seed, epochs=labkit.budget(2, 200), patience=5,
                                    max_minutes=labkit.budget(0, 20)).use_trainer(LoopTrainer(progress=False))
    sasrec.fit(split.train, split.valid)
    seed_ndcg.append(ranking_metrics(target_ranks(sasrec, split.test)[0], (10,))["NDCG@10"])
    print(f"seed {seed}: test NDCG@10 {seed_ndcg[-1]:.4f}")

# %% [markdown] tags=["zh", "ex:6.3"]
# ### 练习 6.3：均值 ± 标准差和 95% 置信区间
#
# 写 `seed_summary(x)`，返回 `(均值, 样本标准差, (下界, 上界))`：标准差用样本标准差（除以 n−1），
# 区间是均值的 95% 置信区间，用 t 分布（种子只有几个，不能用正态分布的 1.96）。用 `scipy.stats`。

# %% [markdown] tags=["en", "ex:6.3"]
# ### Exercise 6.3: mean ± sd and a 95% confidence interval
#
# Write `seed_summary(x)` returning `(mean, sample sd, (low, high))`: the sample standard deviation (divided by
# n − 1) and the 95% confidence interval of the mean from the t distribution (a handful of seeds is too few for
# the normal 1.96). Use `scipy.stats`.

# %% tags=["exercise", "ex:6.3"]
def seed_summary(x):
    mean, sd = float(np.mean(x)), float(np.std(x))  # your code here
    z = stats.norm.ppf(0.975)  # 1.96
    return mean, sd, (mean - z * sd, mean + z * sd)


# %%
if checks.lab06_seed_summary(seed_summary):
    mean, sd, (low, high) = seed_summary(seed_ndcg)
    print(f"test NDCG@10 over {len(seeds)} seeds: {mean:.4f} ± {sd:.4f} (95% CI {low:.4f} .. {high:.4f})")
    fig, ax = plt.subplots(figsize=(7, 2.5))
    ax.plot(seed_ndcg, np.zeros(len(seed_ndcg)), "o", label="one seed")
    ax.errorbar([mean], [0.3], xerr=[[mean - low], [high - mean]], fmt="s", capsize=6, label="mean, 95% CI")
    ax.set(yticks=[], ylim=(-0.5, 0.8), xlabel="test NDCG@10", title="SASRec over random seeds")
    ax.legend()
    plt.tight_layout()
    plt.show()
print(f"lab ran in {time.perf_counter() - t_lab:.0f} s")

# %% [markdown] tags=["zh"]
# ## 小结
#
# 调参、早停都只看验证集；测试集在最后读一次。在测试集上挑配置，报出的分数会系统性偏高（上面的 A/B 实验）。
# 两个模型的差距要和种子之间的波动比：如果差距落在置信区间里，就还不能说谁更好。只有 3 个种子时
# t 分布的分位数是 4.3，区间很宽，下界甚至可能小于 0：这说明种子太少，不是模型会得负分。
# 快速模式只有 800 个用户、每次 2 轮，上面的数字只作演示；完整模式（`python course/run_labs.py --full --labs 06`）在全部 Beauty 用户上
# 搜索 30 次、每次最多 10 分钟，要跑几个小时。

# %% [markdown] tags=["en"]
# ## Summary
#
# Tuning and early stopping read validation only; test is read once, at the end. Choosing a configuration on
# test reports a systematically inflated score (the A/B experiment above). Compare a gap between two models with
# the spread over seeds: a gap inside the confidence interval does not yet say which is better. With 3 seeds the t
# quantile is 4.3, so the interval is wide and its lower end can even fall below 0: too few seeds, not a negative
# score. The fast mode has 800 users and 2 epochs per run, so its figures only illustrate; the full mode
# (`python course/run_labs.py --full --labs 06`) runs 30 trials of up to 10 minutes each on every Beauty user
# and takes hours.
