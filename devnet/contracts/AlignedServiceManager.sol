// SPDX-License-Identifier: MIT
pragma solidity ^0.8.27;

import {BN254} from "./BN254.sol";

/// The part of OperatorRegistry the service manager reads.
interface IOperatorRegistry {
    function getOperatorStakeAtBlock(bytes32 operatorId, uint32 blockNumber) external view returns (uint96);
    function getTotalStakeAtBlock(uint32 blockNumber) external view returns (uint96);
    function getOperatorPubkeyG1(bytes32 operatorId) external view returns (BN254.G1Point memory);
}

/// @title AlignedServiceManager: the devnet's Aligned-style service manager.
/// @notice Batchers create tasks (NewBatchV3); the aggregator responds with an aggregate BLS signature of
///         signers holding at least 67% of the quorum's stake at the task's creation block (BatchVerified).
contract AlignedServiceManager {
    using BN254 for BN254.G1Point;

    uint256 public constant QUORUM_THRESHOLD_PERCENTAGE = 67;

    struct BatchState {
        uint32 taskCreatedBlock;
        bool responded;
        uint256 respondToTaskFeeLimit;
    }

    struct SignersAndSignature {
        /// Operator ids of the signers, strictly ascending, non-empty.
        bytes32[] signerOperatorIds;
        /// The aggregate G2 public key of the signers.
        BN254.G2Point apkG2;
        /// The aggregate G1 signature of the signers on the batch identifier hash.
        BN254.G1Point sigma;
    }

    event NewBatchV2(
        bytes32 indexed batchMerkleRoot, address senderAddress, uint32 taskCreatedBlock, string batchDataPointer
    );
    event NewBatchV3(
        bytes32 indexed batchMerkleRoot,
        address senderAddress,
        uint32 taskCreatedBlock,
        string batchDataPointer,
        uint256 respondToTaskFeeLimit
    );
    event BatchVerified(bytes32 indexed batchMerkleRoot, address senderAddress);

    error BatchAlreadySubmitted(bytes32 batchIdentifierHash);
    error BatchDoesNotExist(bytes32 batchIdentifierHash);
    error BatchAlreadyResponded(bytes32 batchIdentifierHash);
    error SenderIsNotAggregator(address sender, address alignedAggregator);
    error NoSigners();
    error SignersNotSorted(uint256 index);
    error SignerHasNoStake(bytes32 operatorId);
    error InvalidQuorumThreshold(uint256 signedStake, uint256 totalStake);
    error InvalidSignature();

    IOperatorRegistry public immutable registry;
    address public immutable alignedAggregator;

    /// batchIdentifierHash => state
    mapping(bytes32 => BatchState) public batchesState;

    constructor(address registry_, address aggregator_) {
        registry = IOperatorRegistry(registry_);
        alignedAggregator = aggregator_;
    }

    /// keccak256(abi.encodePacked(batchMerkleRoot, senderAddress)): the message operators sign.
    function batchIdentifierHash(bytes32 batchMerkleRoot, address senderAddress) public pure returns (bytes32) {
        return keccak256(abi.encodePacked(batchMerkleRoot, senderAddress));
    }

    /// Not payable: the devnet keeps no batcher balances, so ether sent here would be stuck.
    function createNewTask(bytes32 batchMerkleRoot, string calldata batchDataPointer, uint256 respondToTaskFeeLimit)
        external
    {
        bytes32 identifier = batchIdentifierHash(batchMerkleRoot, msg.sender);
        if (batchesState[identifier].taskCreatedBlock != 0) revert BatchAlreadySubmitted(identifier);
        uint32 taskCreatedBlock = uint32(block.number);
        batchesState[identifier] = BatchState(taskCreatedBlock, false, respondToTaskFeeLimit);
        emit NewBatchV3(batchMerkleRoot, msg.sender, taskCreatedBlock, batchDataPointer, respondToTaskFeeLimit);
    }

    function respondToTaskV2(
        bytes32 batchMerkleRoot,
        address senderAddress,
        SignersAndSignature calldata signersAndSignature
    ) external {
        if (msg.sender != alignedAggregator) revert SenderIsNotAggregator(msg.sender, alignedAggregator);
        bytes32 identifier = batchIdentifierHash(batchMerkleRoot, senderAddress);
        BatchState storage state = batchesState[identifier];
        uint32 taskCreatedBlock = state.taskCreatedBlock;
        if (taskCreatedBlock == 0) revert BatchDoesNotExist(identifier);
        if (state.responded) revert BatchAlreadyResponded(identifier);

        (uint256 signedStake, BN254.G1Point memory apk) =
            _sumSigners(signersAndSignature.signerOperatorIds, taskCreatedBlock);
        uint256 totalStake = registry.getTotalStakeAtBlock(taskCreatedBlock);
        if (signedStake * 100 < totalStake * QUORUM_THRESHOLD_PERCENTAGE) {
            revert InvalidQuorumThreshold(signedStake, totalStake);
        }
        if (!_verifyAggregate(identifier, apk, signersAndSignature.apkG2, signersAndSignature.sigma)) {
            revert InvalidSignature();
        }

        state.responded = true;
        emit BatchVerified(batchMerkleRoot, senderAddress);
    }

    /// The signers' stake at `blockNumber` and the sum of their G1 public keys.
    function _sumSigners(bytes32[] calldata operatorIds, uint32 blockNumber)
        private
        view
        returns (uint256 signedStake, BN254.G1Point memory apk)
    {
        uint256 count = operatorIds.length;
        if (count == 0) revert NoSigners();
        for (uint256 i = 0; i < count; i++) {
            bytes32 operatorId = operatorIds[i];
            if (i != 0 && uint256(operatorId) <= uint256(operatorIds[i - 1])) revert SignersNotSorted(i);
            uint96 stake = registry.getOperatorStakeAtBlock(operatorId, blockNumber);
            if (stake == 0) revert SignerHasNoStake(operatorId);
            signedStake += stake;
            apk = apk.plus(registry.getOperatorPubkeyG1(operatorId));
        }
    }

    /// One pairing check binding the G1 and G2 aggregate keys:
    /// e(sigma + gamma * apk, -G2) * e(H(m) + gamma * G1, apkG2) == 1.
    function _verifyAggregate(
        bytes32 messageHash,
        BN254.G1Point memory apk,
        BN254.G2Point calldata apkG2,
        BN254.G1Point calldata sigma
    ) private view returns (bool) {
        uint256 gamma = uint256(
            keccak256(
                abi.encodePacked(
                    messageHash,
                    apk.X,
                    apk.Y,
                    apkG2.X[0],
                    apkG2.X[1],
                    apkG2.Y[0],
                    apkG2.Y[1],
                    sigma.X,
                    sigma.Y
                )
            )
        ) % BN254.FR_MODULUS;
        return BN254.pairing(
            BN254.G1Point(sigma.X, sigma.Y).plus(apk.scalar_mul(gamma)),
            BN254.negGeneratorG2(),
            BN254.hashToG1(messageHash).plus(BN254.generatorG1().scalar_mul(gamma)),
            apkG2
        );
    }
}
