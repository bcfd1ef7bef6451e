// Go's own gob on the look-alike SignedTaskResponse, for the codec's tests.
//   gobcheck encode: JSON responses (one per line) in, the hex of one gob stream holding them all out
//   gobcheck decode: the hex of a gob stream in, its SignedTaskResponse values out as JSON lines
package main

import (
	"bufio"
	"bytes"
	"encoding/gob"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
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

// The JSON shape: byte arrays as hex, the field elements' limbs as they are (Montgomery form).
type plain struct {
	BatchMerkleRoot     string     `json:"BatchMerkleRoot"`
	SenderAddress       string     `json:"SenderAddress"`
	BatchIdentifierHash string     `json:"BatchIdentifierHash"`
	X                   *[4]uint64 `json:"X"`
	Y                   *[4]uint64 `json:"Y"`
	OperatorId          string     `json:"OperatorId"`
}

func fill(dst []byte, text string) {
	raw, err := hex.DecodeString(text)
	if err != nil || len(raw) != len(dst) {
		panic("bad hex " + text)
	}
	copy(dst, raw)
}

func main() {
	switch os.Args[1] {
	case "encode":
		var buffer bytes.Buffer
		encoder := gob.NewEncoder(&buffer)
		lines := bufio.NewScanner(os.Stdin)
		for lines.Scan() {
			var p plain
			if err := json.Unmarshal(lines.Bytes(), &p); err != nil {
				panic(err)
			}
			var r SignedTaskResponse
			fill(r.BatchMerkleRoot[:], p.BatchMerkleRoot)
			fill(r.SenderAddress[:], p.SenderAddress)
			fill(r.BatchIdentifierHash[:], p.BatchIdentifierHash)
			fill(r.OperatorId[:], p.OperatorId)
			if p.X != nil {
				r.BlsSignature = Signature{&G1Point{&G1Affine{X: Element(*p.X), Y: Element(*p.Y)}}}
			}
			if err := encoder.Encode(&r); err != nil {
				panic(err)
			}
		}
		fmt.Println(hex.EncodeToString(buffer.Bytes()))
	case "decode":
		raw, err := io.ReadAll(os.Stdin)
		if err != nil {
			panic(err)
		}
		data, err := hex.DecodeString(strings.TrimSpace(string(raw)))
		if err != nil {
			panic(err)
		}
		decoder := gob.NewDecoder(bytes.NewReader(data))
		out := json.NewEncoder(os.Stdout)
		for {
			var r SignedTaskResponse
			if err := decoder.Decode(&r); err == io.EOF {
				return
			} else if err != nil {
				fmt.Fprintln(os.Stderr, "decode:", err)
				os.Exit(1)
			}
			p := plain{
				BatchMerkleRoot:     hex.EncodeToString(r.BatchMerkleRoot[:]),
				SenderAddress:       hex.EncodeToString(r.SenderAddress[:]),
				BatchIdentifierHash: hex.EncodeToString(r.BatchIdentifierHash[:]),
				OperatorId:          hex.EncodeToString(r.OperatorId[:]),
			}
			if r.BlsSignature.G1Point != nil && r.BlsSignature.G1Affine != nil {
				x, y := [4]uint64(r.BlsSignature.X), [4]uint64(r.BlsSignature.Y)
				p.X, p.Y = &x, &y
			}
			out.Encode(p)
		}
	}
}
