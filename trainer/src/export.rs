//! ONNX export shaped for serving: one call scores the whole catalogue for one
//! user. Everything that depends only on items (or only on users) is computed
//! here, once, so a request does two row lookups, one small matrix product for
//! the GMF tower and the MLP layers after the first:
//!
//! ```text
//! user ─Gather→ gmf_user·h_gmf [1,F] ─┐
//!                     gmf_item [I,F] ─┴Gemm(transB)→ [I,1] ───────────────┐
//! user ─Gather→ mlp1_user [1,L1] ─┐                                       ├Add→ +b ─Sigmoid─Reshape→ score [I]
//!   mlp1_item (= Q·W1_item + b1) ─┴Add─Relu─(Gemm─Relu)*─MatMul h_mlp → [I,1]
//! ```
//!
//! A history-input model can instead be exported for fold-in
//! ([`export_history_onnx`]): the graph reads the user's movies and their
//! recency weights, and the two user rows are the weighted sums of per-movie
//! rows (with `h_gmf` and the first layer's user half folded in, so a
//! request still costs two small gathers and the item side is unchanged):
//!
//! ```text
//! history_weights ─ /‖·‖₂ → w [1,n]
//! history_items ─Gather→ ctx_gmf_h [n,F] ─ w·→ gu [1,F] ─┐ (then as above)
//! history_items ─Gather→ ctx_mlp1 [n,L1] ─ w·→ mu [1,L1] ─┘
//! ```

use crate::model::NeuMfWeights;
use crate::onnx_proto::*;
use prost::Message;
use shared::artifact::{ONNX_HISTORY_ITEMS, ONNX_HISTORY_WEIGHTS, ONNX_INPUT, ONNX_OUTPUT};

/// ONNX opset the graph targets.
pub const OPSET: i64 = 17;
const IR_VERSION: i64 = 8;
const FLOAT: i32 = 1;
const INT64: i32 = 7;

/// `a [n×k] · b [k×m]`, row-major.
fn matmul(a: &[f32], b: &[f32], n: usize, k: usize, m: usize) -> Vec<f32> {
    let mut out = vec![0f32; n * m];
    for r in 0..n {
        let row = &mut out[r * m..][..m];
        for (t, &x) in a[r * k..][..k].iter().enumerate() {
            for (o, &y) in row.iter_mut().zip(&b[t * m..][..m]) {
                *o += x * y;
            }
        }
    }
    out
}

fn tensor_f32(name: &str, dims: &[usize], data: &[f32]) -> TensorProto {
    assert_eq!(
        dims.iter().product::<usize>(),
        data.len(),
        "{name}: shape and data disagree"
    );
    TensorProto {
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: Some(FLOAT),
        name: Some(name.into()),
        raw_data: Some(data.iter().flat_map(|x| x.to_le_bytes()).collect()),
    }
}

fn node(op: &str, inputs: &[&str], output: &str, attrs: &[(&str, i64)]) -> NodeProto {
    NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        name: Some(output.into()),
        op_type: Some(op.into()),
        attribute: attrs
            .iter()
            .map(|(n, v)| AttributeProto {
                name: Some(n.to_string()),
                i: Some(*v),
                r#type: Some(2),
            })
            .collect(),
    }
}

fn value_info(name: &str, elem: i32, dims: &[i64]) -> ValueInfoProto {
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            tensor_type: Some(TypeProtoTensor {
                elem_type: Some(elem),
                shape: Some(TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|&d| Dimension {
                            dim_value: Some(d),
                            dim_param: None,
                        })
                        .collect(),
                }),
            }),
        }),
    }
}

fn tensor_i64(name: &str, data: &[i64]) -> TensorProto {
    TensorProto {
        dims: vec![data.len() as i64],
        data_type: Some(INT64),
        name: Some(name.into()),
        raw_data: Some(data.iter().flat_map(|x| x.to_le_bytes()).collect()),
    }
}

/// Rows of `table` (`[rows × h.len()]`) scaled element-wise by `h`.
fn scale_rows(table: &[f32], h: &[f32]) -> Vec<f32> {
    table
        .chunks(h.len())
        .flat_map(|row| row.iter().zip(h).map(|(a, b)| a * b))
        .collect()
}

/// A tensor input of one dimension named `dim` (its length varies per call).
fn value_info_dyn(name: &str, elem: i32, dim: &str) -> ValueInfoProto {
    let mut v = value_info(name, elem, &[0]);
    if let Some(shape) = v
        .r#type
        .as_mut()
        .and_then(|t| t.tensor_type.as_mut())
        .and_then(|t| t.shape.as_mut())
    {
        shape.dim = vec![Dimension {
            dim_value: None,
            dim_param: Some(dim.into()),
        }];
    }
    v
}

/// Serialises the serving graph for `w`, reading a user index (the user
/// rows of `w`); `metadata` lands in the model's metadata_props.
pub fn export_onnx(w: &NeuMfWeights, metadata: &[(&str, &str)]) -> Vec<u8> {
    let (nu, f, d, l1) = (w.n_users, w.factors, w.mlp_dim(), w.layers[1]);
    // GMF: fold the prediction weights into the user factors; the first MLP
    // layer split into user and item halves: [pu | qi]·W1 = pu·W1[:d] + qi·W1[d:].
    let gmf_user_h = scale_rows(&w.gmf_user, &w.out_w[..f]);
    let mlp1_user = matmul(&w.mlp_user, &w.dense[0].0[..d * l1], nu, d, l1);
    let init = vec![
        tensor_f32("gmf_user_h", &[nu, f], &gmf_user_h),
        tensor_f32("mlp1_user", &[nu, l1], &mlp1_user),
    ];
    let nodes = vec![
        node("Gather", &["gmf_user_h", ONNX_INPUT], "gu", &[("axis", 0)]),
        node("Gather", &["mlp1_user", ONNX_INPUT], "mu", &[("axis", 0)]),
    ];
    let inputs = vec![value_info(ONNX_INPUT, INT64, &[1])];
    let doc = "NeuMF: scores every item for one user (input: user index int64[1]; output: probability per item)";
    export_graph(w, init, nodes, inputs, doc, metadata)
}

/// Serialises the fold-in serving graph of a history-input model (one whose
/// user rows are sums of per-movie rows, with no free per-user part): it
/// reads [`ONNX_HISTORY_ITEMS`] (int64 `[n]`) and [`ONNX_HISTORY_WEIGHTS`]
/// (float `[n]`, L2-normalised in the graph as the trainer normalises them),
/// so any user with one movie can be scored and new events count at once.
pub fn export_history_onnx(w: &NeuMfWeights, metadata: &[(&str, &str)]) -> Vec<u8> {
    let ctx = w
        .user_context
        .as_ref()
        .filter(|c| c.free.is_none())
        .expect("a history-input model without free user rows");
    let (ni, f, d, l1) = (w.n_items, w.factors, w.mlp_dim(), w.layers[1]);
    let ctx_gmf_h = scale_rows(&ctx.gmf, &w.out_w[..f]);
    let ctx_mlp1 = matmul(&ctx.mlp, &w.dense[0].0[..d * l1], ni, d, l1);
    let init = vec![
        tensor_f32("ctx_gmf_h", &[ni, f], &ctx_gmf_h),
        tensor_f32("ctx_mlp1", &[ni, l1], &ctx_mlp1),
        tensor_f32("tiny", &[1], &[f32::MIN_POSITIVE]),
        tensor_i64("row_shape", &[1, -1]),
    ];
    let w_in = ONNX_HISTORY_WEIGHTS;
    let nodes = vec![
        node("ReduceSumSquare", &[w_in], "wss", &[("keepdims", 1)]),
        node("Sqrt", &["wss"], "wnorm", &[]),
        node("Max", &["wnorm", "tiny"], "wden", &[]),
        node("Div", &[w_in, "wden"], "wn", &[]),
        node("Reshape", &["wn", "row_shape"], "wrow", &[]),
        node(
            "Gather",
            &["ctx_gmf_h", ONNX_HISTORY_ITEMS],
            "hg",
            &[("axis", 0)],
        ),
        node("MatMul", &["wrow", "hg"], "gu", &[]),
        node(
            "Gather",
            &["ctx_mlp1", ONNX_HISTORY_ITEMS],
            "hm",
            &[("axis", 0)],
        ),
        node("MatMul", &["wrow", "hm"], "mu", &[]),
    ];
    let inputs = vec![
        value_info_dyn(ONNX_HISTORY_ITEMS, INT64, "n"),
        value_info_dyn(ONNX_HISTORY_WEIGHTS, FLOAT, "n"),
    ];
    let doc = "NeuMF with fold-in: scores every item for one user given by their movies (inputs: history_items int64[n], history_weights float[n]; output: probability per item)";
    export_graph(w, init, nodes, inputs, doc, metadata)
}

/// The graph after the user rows `gu` `[1,F]` (with `h_gmf` folded in) and
/// `mu` `[1,L1]` (the first layer's user half), which `user_init` and
/// `user_nodes` compute from `inputs`.
fn export_graph(
    w: &NeuMfWeights,
    user_init: Vec<TensorProto>,
    user_nodes: Vec<NodeProto>,
    inputs: Vec<ValueInfoProto>,
    doc: &str,
    metadata: &[(&str, &str)],
) -> Vec<u8> {
    let (ni, f, d) = (w.n_items, w.factors, w.mlp_dim());
    let last = *w.layers.last().expect("layers");
    let h_mlp = &w.out_w[f..];
    assert_eq!(h_mlp.len(), last);
    let (w1, b1) = &w.dense[0];
    let l1 = w.layers[1];
    let mut mlp1_item = matmul(&w.mlp_item, &w1[d * l1..], ni, d, l1);
    for row in mlp1_item.chunks_mut(l1) {
        row.iter_mut().zip(b1).for_each(|(x, b)| *x += b);
    }

    let mut init = user_init;
    init.extend([
        tensor_f32("gmf_item", &[ni, f], &w.gmf_item),
        tensor_f32("mlp1_item", &[ni, l1], &mlp1_item),
        tensor_f32("h_mlp", &[last, 1], h_mlp),
        tensor_f32("out_b", &[1], &[w.out_b]),
        tensor_i64("out_shape", &[-1]),
    ]);
    let mut nodes = user_nodes;
    nodes.extend([
        node("Gemm", &["gmf_item", "gu"], "gmf", &[("transB", 1)]),
        node("Add", &["mlp1_item", "mu"], "z1", &[]),
        node("Relu", &["z1"], "h1", &[]),
    ]);
    let mut h = "h1".to_string();
    for (k, ((wt, b), dims)) in w.dense.iter().zip(w.layers.windows(2)).enumerate().skip(1) {
        let (wn, bn, zn, hn) = (
            format!("w{}", k + 1),
            format!("b{}", k + 1),
            format!("z{}", k + 1),
            format!("h{}", k + 1),
        );
        init.push(tensor_f32(&wn, &[dims[0], dims[1]], wt));
        init.push(tensor_f32(&bn, &[dims[1]], b));
        nodes.push(node("Gemm", &[&h, &wn, &bn], &zn, &[]));
        nodes.push(node("Relu", &[&zn], &hn, &[]));
        h = hn;
    }
    nodes.push(node("MatMul", &[&h, "h_mlp"], "mlp", &[]));
    nodes.push(node("Add", &["gmf", "mlp"], "logit0", &[]));
    nodes.push(node("Add", &["logit0", "out_b"], "logit", &[]));
    nodes.push(node("Sigmoid", &["logit"], "prob", &[]));
    nodes.push(node("Reshape", &["prob", "out_shape"], ONNX_OUTPUT, &[]));

    let model = ModelProto {
        ir_version: Some(IR_VERSION),
        producer_name: Some("movie-recs".into()),
        producer_version: Some(env!("CARGO_PKG_VERSION").into()),
        doc_string: Some(doc.into()),
        graph: Some(GraphProto {
            node: nodes,
            name: Some("neumf".into()),
            initializer: init,
            input: inputs,
            output: vec![value_info(ONNX_OUTPUT, FLOAT, &[ni as i64])],
        }),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(OPSET),
        }],
        metadata_props: metadata
            .iter()
            .map(|(k, v)| StringStringEntryProto {
                key: Some(k.to_string()),
                value: Some(v.to_string()),
            })
            .collect(),
    };
    model.encode_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matmul_small() {
        // [1 2; 3 4] · [5; 6] = [17; 39]
        assert_eq!(
            matmul(&[1.0, 2.0, 3.0, 4.0], &[5.0, 6.0], 2, 2, 1),
            vec![17.0, 39.0]
        );
    }

    #[test]
    fn graph_decodes_and_has_expected_shape() {
        let m = crate::model::NeuMf::new(3, 5, 2, &[4, 3, 2], 1).unwrap();
        let bytes = export_onnx(&m.weights().unwrap(), &[("version", "t")]);
        let p = ModelProto::decode(bytes.as_slice()).unwrap();
        let g = p.graph.unwrap();
        assert_eq!(p.opset_import[0].version, Some(OPSET));
        assert_eq!(g.input[0].name.as_deref(), Some(ONNX_INPUT));
        assert_eq!(g.output[0].name.as_deref(), Some(ONNX_OUTPUT));
        let ops: Vec<_> = g.node.iter().map(|n| n.op_type.clone().unwrap()).collect();
        assert_eq!(
            ops,
            [
                "Gather", "Gather", "Gemm", "Add", "Relu", "Gemm", "Relu", "MatMul", "Add", "Add",
                "Sigmoid", "Reshape"
            ]
        );
        let item_table = g
            .initializer
            .iter()
            .find(|t| t.name.as_deref() == Some("mlp1_item"))
            .unwrap();
        assert_eq!(
            item_table.dims,
            vec![5, 3],
            "item half of the first layer is precomputed per item"
        );
    }
}
