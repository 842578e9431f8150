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

use crate::model::NeuMfWeights;
use crate::onnx_proto::*;
use prost::Message;
use shared::artifact::{ONNX_INPUT, ONNX_OUTPUT};

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
                        .map(|&d| Dimension { dim_value: Some(d) })
                        .collect(),
                }),
            }),
        }),
    }
}

/// Serialises the serving graph for `w`; `metadata` lands in the model's metadata_props.
pub fn export_onnx(w: &NeuMfWeights, metadata: &[(&str, &str)]) -> Vec<u8> {
    let (nu, ni, f, d) = (w.n_users, w.n_items, w.factors, w.mlp_dim());
    let last = *w.layers.last().expect("layers");
    let h_gmf = &w.out_w[..f];
    let h_mlp = &w.out_w[f..];
    assert_eq!(h_mlp.len(), last);

    // GMF: fold the prediction weights into the user factors.
    let gmf_user_h: Vec<f32> = w
        .gmf_user
        .chunks(f)
        .flat_map(|row| row.iter().zip(h_gmf).map(|(a, b)| a * b))
        .collect();
    // First MLP layer split into user and item halves: [pu | qi]·W1 = pu·W1[:d] + qi·W1[d:].
    let (w1, b1) = &w.dense[0];
    let l1 = w.layers[1];
    let mlp1_user = matmul(&w.mlp_user, &w1[..d * l1], nu, d, l1);
    let mut mlp1_item = matmul(&w.mlp_item, &w1[d * l1..], ni, d, l1);
    for row in mlp1_item.chunks_mut(l1) {
        row.iter_mut().zip(b1).for_each(|(x, b)| *x += b);
    }

    let mut init = vec![
        tensor_f32("gmf_user_h", &[nu, f], &gmf_user_h),
        tensor_f32("gmf_item", &[ni, f], &w.gmf_item),
        tensor_f32("mlp1_user", &[nu, l1], &mlp1_user),
        tensor_f32("mlp1_item", &[ni, l1], &mlp1_item),
        tensor_f32("h_mlp", &[last, 1], h_mlp),
        tensor_f32("out_b", &[1], &[w.out_b]),
        TensorProto {
            dims: vec![1],
            data_type: Some(INT64),
            name: Some("out_shape".into()),
            raw_data: Some((-1i64).to_le_bytes().to_vec()),
        },
    ];
    let mut nodes = vec![
        node("Gather", &["gmf_user_h", ONNX_INPUT], "gu", &[("axis", 0)]),
        node("Gemm", &["gmf_item", "gu"], "gmf", &[("transB", 1)]),
        node("Gather", &["mlp1_user", ONNX_INPUT], "mu", &[("axis", 0)]),
        node("Add", &["mlp1_item", "mu"], "z1", &[]),
        node("Relu", &["z1"], "h1", &[]),
    ];
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
        doc_string: Some("NeuMF: scores every item for one user (input: user index int64[1]; output: probability per item)".into()),
        graph: Some(GraphProto {
            node: nodes,
            name: Some("neumf".into()),
            initializer: init,
            input: vec![value_info(ONNX_INPUT, INT64, &[1])],
            output: vec![value_info(ONNX_OUTPUT, FLOAT, &[ni as i64])],
        }),
        opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(OPSET) }],
        metadata_props: metadata
            .iter()
            .map(|(k, v)| StringStringEntryProto { key: Some(k.to_string()), value: Some(v.to_string()) })
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
                "Gather", "Gemm", "Gather", "Add", "Relu", "Gemm", "Relu", "MatMul", "Add", "Add",
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
