// An unmodified Aligned aggregator's side of net/rpc, for the tests: the look-alike types and net/rpc served
// over HTTP as aligned_layer does (rpc.Register, rpc.HandleHTTP). Usage: aggregator REPLY; it prints
// "listening HOST:PORT", then one JSON line per signed task response it receives (hex, field elements in
// standard form), and answers each with REPLY (0 or 1). ServerRunning answers 1.
package main

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/rpc"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
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

var modulus, _ = new(big.Int).SetString("21888242871839275222246405745257275088696311157297823662689037894645226208583", 10)

// standard is the field element an Element (Montgomery form) stands for, as 0x and 64 hex digits.
func standard(e Element) string {
	mont := new(big.Int)
	for i := 3; i >= 0; i-- {
		mont.Lsh(mont, 64)
		mont.Or(mont, new(big.Int).SetUint64(e[i]))
	}
	rInverse := new(big.Int).ModInverse(new(big.Int).Mod(new(big.Int).Lsh(big.NewInt(1), 256), modulus), modulus)
	x := new(big.Int).Mul(mont, rInverse)
	x.Mod(x, modulus)
	return fmt.Sprintf("0x%064x", x)
}

type Aggregator struct {
	reply uint8
	mu    sync.Mutex
	out   *json.Encoder
}

func (a *Aggregator) ProcessOperatorSignedTaskResponseV2(r *SignedTaskResponse, reply *uint8) error {
	if r.BlsSignature.G1Point == nil || r.BlsSignature.G1Point.G1Affine == nil {
		*reply = 1
		return fmt.Errorf("invalid response: nil signature")
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.out.Encode(map[string]interface{}{
		"batchMerkleRoot":     "0x" + hex.EncodeToString(r.BatchMerkleRoot[:]),
		"senderAddress":       "0x" + hex.EncodeToString(r.SenderAddress[:]),
		"batchIdentifierHash": "0x" + hex.EncodeToString(r.BatchIdentifierHash[:]),
		"blsSignature":        map[string]string{"X": standard(r.BlsSignature.X), "Y": standard(r.BlsSignature.Y)},
		"operatorId":          "0x" + hex.EncodeToString(r.OperatorId[:]),
	})
	*reply = a.reply
	return nil
}

// Connections is not upstream's: it tells the tests how many connections were accepted so far.
func (a *Aggregator) Connections(_ *struct{}, reply *int64) error {
	*reply = atomic.LoadInt64(&accepted)
	return nil
}

var accepted int64

func (a *Aggregator) ServerRunning(_ *struct{}, reply *int64) error {
	*reply = 1
	return nil
}

func main() {
	reply, err := strconv.Atoi(os.Args[1])
	if err != nil {
		panic(err)
	}
	if err := rpc.Register(&Aggregator{reply: uint8(reply), out: json.NewEncoder(os.Stdout)}); err != nil {
		panic(err)
	}
	rpc.HandleHTTP()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	fmt.Println("listening", listener.Addr().String())
	server := &http.Server{ConnState: func(_ net.Conn, state http.ConnState) {
		if state == http.StateNew {
			atomic.AddInt64(&accepted, 1)
		}
	}}
	server.Serve(listener)
}
