"""Write notebooks/05_multiple_outputs.ipynb (and, with --execute, run it in place).

    python notebooks/build_05_multiple_outputs.py [--execute]

D outputs (THEORY §3c, §5.7): the derivation for D = 2 stepped through in SymPy (each step
checks itself exactly, derivations.multi_steps), then the FC's kernel shape and the CNN's
output-resolved Q on 10-class digits (small P, so it runs in well under a minute).
"""
from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent
PATH = HERE / "05_multiple_outputs.ipynb"

CELLS = [
    ("md", r"""# 05 · Multiple outputs: kernel shape and local renormalization with D outputs

With $D$ outputs every hidden unit has one readout weight per output, $f_d(x) = (Nn)^{-1/2}
\sum_{a,i} v_{a,i,d}\,\varphi_{a,i}(x)$, and the likelihood sums over outputs (THEORY §1). The
order parameters become $(nD)\times(nD)$ matrices indexed by (patch, output) — $D\times D$ for the
FC, where $Q$ is the **kernel shape** of Baglioni et al. (arXiv:2412.15911) — and the renormalized
kernel couples outputs (THEORY §3c):

$$(K_R)_{de} = \frac{1}{\lambda_1 n}\sum_{ij}\Big[Q_{(i,d),(j,e)}(K_{ij}-\mu_i\mu_j^\top)
+ \big((\mathbb 1+\bar Q)^{-1}\big)_{(i,d),(j,e)}\,\mu_i\mu_j^\top\Big],\qquad A = T\mathbb 1_{DP}+K_R .$$

Below, every step of the derivation for $D = 2$ runs in SymPy at explicit small sizes and raises
if the derived expression differs from the stated one (`derivations/multi_steps.py`)."""),
    ("code", r"""import time
import numpy as np
import sympy as sp
from IPython.display import Markdown, display

from derivations import multi_steps as ms
from derivations import steps as st

t_start = time.perf_counter()

def show(step):
    display(Markdown(f"**Step {step.number} — {step.title}.** {step.text}"))
    for c in step.checked:
        print("  checked:", c)"""),
    ("md", r"""## Steps 2–3: readout weights and outputs

Integrating the $N n D$ readout weights gives $-\tfrac12\sum_d \bar s_d^\top \hat K \bar s_d$ with
the *one-output* empirical kernel $\hat K$ for every output; the $DP$ outputs integrate as one
stacked vector (index $(d,\mu)$)."""),
    ("code", r"""show(ms.step2_multi_readout(P=1, n=1, D=2))
show(ms.step3_multi_outputs(P=1, D=2))"""),
    ("md", r"""## Steps 4–5: one $nD$-vector per channel

$q_{a,(i,d)} = \bar s_d\cdot\varphi_{a,i}$; the exponent is a sum over channels, and the moments
are $\mathbb E\,q_{(i,d)}=\bar s_d^\top\mu_i$,
$\mathrm{Cov}(q_{(i,d)},q_{(j,e)})=\bar s_d^\top(K_{ij}-\mu_i\mu_j^\top)\bar s_e$."""),
    ("code", r"""show(ms.step4_multi_factorization("cnn", P=1, n=2, D=2, channels=2))
show(ms.step5_multi_moments(P=1, n=2, D=2, kind="cnn"))"""),
    ("md", r"""## Step 6: order parameters, and the assembly of $K_R$

$\bar Q_{(i,d),(j,e)} = \bar s_d^\top \tilde K_{ij}\bar s_e/(\lambda_1 N n)$ imposed with conjugates
$Q$: the $\bar s$-quadratic form becomes $T\mathbb 1_{DP}+K_R$ with the blocks above. For the FC
with $D = 2$ (relu-like, with a mean):"""),
    ("code", r"""d_fc = ms.multi_data("fc", 1, 2, 1, zero_mean=False)
s6 = ms.step6_multi_order_parameters(d_fc)
show(s6)
display(sp.simplify(s6.expected))"""),
    ("md", r"""## Steps 7–8: the action

$S=-\mathrm{Tr}(Q\bar Q)+\log\det(\mathbb 1+\bar Q)+\frac1N\big[\log\det A+y^\top A^{-1}y\big]$,
equal to the program `derivations.multi_output` from which `kren/generated/multi*.py` are
printed (zero mean: $\bar Q = Q^{-1}-\mathbb 1$)."""),
    ("code", r"""s8 = ms.step8_multi_action(ms.multi_data("fc", 1, 2, 1, zero_mean=True))
show(s8)
display(s8.derived)"""),
    ("md", r"""## Limits (THEORY §5.7, §5.1)

$D = 1$ is the one-output action; at $Q=\mathbb 1$ the $D$ outputs are independent GP
regressions; with one patch CNN = LCN = FC for any $D$."""),
    ("code", r"""show(ms.d1_is_single_output("fc", n=1, P=1, zero_mean=True))
show(ms.identity_gives_independent_gps("fc", n=1, D=2, P=1))
show(ms.n1_cnn_lcn_fc(D=2, P=1, zero_mean=True))"""),
    ("md", r"""## 10-class digits: the FC kernel shape

One-hot targets $\pm1$ (`one_hot=True`), $D = 10$. At finite $N$ the FC's $Q$ is a full
$10\times10$ matrix: $K_R = (Q\otimes K)/\lambda_1$ mixes the outputs. $Q - \mathbb 1$ is the learned
output–output structure (it vanishes at $N=\infty$)."""),
    ("code", r"""import io
from IPython.display import Image
import kren
from kren.data import load_digits
from kren.plotting_multi import plot_kernel_shape, plot_output_pair_maps, output_pair_map

def show_png(plot, Q, **kw):
    buf = io.BytesIO()
    plot(Q, buf, **kw)
    display(Image(data=buf.getvalue(), format="png"))

data = load_digits(classes="all", n_train=60, n_test=100, seed=0)
X, labels, Xt, lt = data.X_train, data.y_train, data.X_test, data.y_test
fc = kren.FC(N=10, T=0.1, one_hot=True).fit(X, labels)
print("FC: Q_ shape", fc.Q_.shape, "converged", fc.result_.converged,
      "| eigenvalues of Q:", np.round(np.linalg.eigvalsh(fc.Q_), 3))
print(f"FC accuracy {fc.score(Xt, lt):.3f}, D-averaged test error "
      f"{fc.test_error(Xt, lt).total:.4f}")
show_png(plot_kernel_shape, fc.Q_, labels=fc.classes_, title="FC, N = 10: kernel shape Q − 𝟙")"""),
    ("md", r"""## The CNN's output-resolved $Q$

CNN with a 2×2 mask, stride 2 (n = 16 patches): $Q$ is $160\times160$, read as
`Q_[i, d, j, e]`. Each $16\times16$ block is the patch×patch map of one output pair $(d,e)$:
which blocks $K_{ij}$ (including cross-patch ones, which the NNGP kernel lacks) enter the
$(d,e)$ block of $K_R$."""),
    ("code", r"""cnn = kren.CNN(N=10, T=0.1, mask=(2, 2), stride=2, input_shape=(1, 8, 8),
               one_hot=True).fit(X[:40], labels[:40])
print("CNN: Q_ shape", cnn.Q_.shape, "converged", cnn.result_.converged)
print(f"CNN accuracy {cnn.score(Xt, lt):.3f}, D-averaged test error "
      f"{cnn.test_error(Xt, lt).total:.4f}")
M01 = output_pair_map(cnn.Q_, 0, 1)
print("largest |Q_(i,0),(j,1)| (outputs 0 and 1):", float(np.max(np.abs(M01))))
show_png(plot_output_pair_maps, cnn.Q_, labels=cnn.classes_,
         title="CNN, N = 10: Q − 𝟙 per output pair")
print(f"notebook ran in {time.perf_counter() - t_start:.1f} s")"""),
]


def build() -> nbformat.NotebookNode:
    nb = new_notebook()
    nb.cells = [new_markdown_cell(src) if kind == "md" else new_code_cell(src)
                for kind, src in CELLS]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    return nb


def execute(nb, timeout=300):
    from nbclient import NotebookClient
    NotebookClient(nb, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(HERE.parent)}}).execute()
    return nb


if __name__ == "__main__":
    nb = build()
    if "--execute" in sys.argv:
        execute(nb)
    nbformat.write(nb, PATH)
    print("wrote", PATH)
