// An unmodified Aligned operator's side of net/rpc, for the tests: look-alike types with the names and shapes
// of aligned_layer's SignedTaskResponse (eigensdk-go's bls.Signature, gnark-crypto's Element) and the standard
// library's net/rpc as it is. Usage: operator HOST:PORT, then one JSON request per line on stdin:
//   {"response": {<the intake's JSON>}}   calls Aggregator.ProcessOperatorSignedTaskResponseV2
//   {"response": {...}, "nilSignature": true}   the same with a nil G1Point
//   {"ping": true}                        calls Aggregator.ServerRunning
// and one JSON answer per line on stdout: {"reply": N, "error": "..."}.
package main

import (
	"bufio"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/big"
	"net/rpc"
	"os"
	"strings"
)

type Element [4]uint64

type G1Affine struct {
	X, Y Element
}

type G1Point struct {
	*G1Affine
}

type Signature struct {
	*G1Point
}

type Bytes32 [32]byte

type SignedTaskResponse struct {
	BatchMerkleRoot     [32]byte
	SenderAddress       [20]byte
	BatchIdentifierHash [32]byte
	BlsSignature        Signature
	OperatorId          Bytes32
}

type point struct {
	X string `json:"X"`
	Y string `json:"Y"`
}

type response struct {
	BatchMerkleRoot     string `json:"batchMerkleRoot"`
	SenderAddress       string `json:"senderAddress"`
	BatchIdentifierHash string `json:"batchIdentifierHash"`
	BlsSignature        point  `json:"blsSignature"`
	OperatorId          string `json:"operatorId"`
}

type request struct {
	Response     *response `json:"response"`
	NilSignature bool      `json:"nilSignature"`
	Ping         bool      `json:"ping"`
}

type answer struct {
	Reply int64  `json:"reply"`
	Error string `json:"error"`
}

var modulus, _ = new(big.Int).SetString("21888242871839275222246405745257275088696311157297823662689037894645226208583", 10)

// element is x in Montgomery form (x * 2^256 mod p), least significant limb first.
func element(text string) Element {
	x, ok := new(big.Int).SetString(strings.TrimPrefix(text, "0x"), 16)
	if !ok {
		panic("bad field element " + text)
	}
	mont := new(big.Int).Lsh(x, 256)
	mont.Mod(mont, modulus)
	var e Element
	mask := new(big.Int).SetUint64(^uint64(0))
	for i := 0; i < 4; i++ {
		e[i] = new(big.Int).And(new(big.Int).Rsh(mont, uint(64*i)), mask).Uint64()
	}
	return e
}

func fill(dst []byte, text string) {
	raw, err := hex.DecodeString(strings.TrimPrefix(text, "0x"))
	if err != nil || len(raw) != len(dst) {
		panic("bad hex " + text)
	}
	copy(dst, raw)
}

func signed(r *response, nilSignature bool) *SignedTaskResponse {
	out := &SignedTaskResponse{}
	fill(out.BatchMerkleRoot[:], r.BatchMerkleRoot)
	fill(out.SenderAddress[:], r.SenderAddress)
	fill(out.BatchIdentifierHash[:], r.BatchIdentifierHash)
	fill(out.OperatorId[:], r.OperatorId)
	if !nilSignature {
		out.BlsSignature = Signature{&G1Point{&G1Affine{X: element(r.BlsSignature.X), Y: element(r.BlsSignature.Y)}}}
	}
	return out
}

func main() {
	client, err := rpc.DialHTTP("tcp", os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "dial:", err)
		os.Exit(2)
	}
	defer client.Close()
	lines := bufio.NewScanner(os.Stdin)
	out := json.NewEncoder(os.Stdout)
	for lines.Scan() {
		var req request
		if err := json.Unmarshal(lines.Bytes(), &req); err != nil {
			panic(err)
		}
		var result answer
		if req.Ping {
			var reply int64
			err = client.Call("Aggregator.ServerRunning", struct{}{}, &reply)
			result.Reply = reply
		} else {
			var reply uint8
			err = client.Call("Aggregator.ProcessOperatorSignedTaskResponseV2", signed(req.Response, req.NilSignature), &reply)
			result.Reply = int64(reply)
		}
		if err != nil {
			result.Error = err.Error()
		}
		out.Encode(result)
	}
}
