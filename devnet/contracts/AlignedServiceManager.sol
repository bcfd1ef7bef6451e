// SPDX-License-Identifier: MIT
pragma solidity ^0.8.27;

import {BN254} from "./BN254.sol";

/// The parts of OperatorRegistry (EigenLayer's RegistryCoordinator, BLSApkRegistry and StakeRegistry in one)
/// that checkSignatures reads.
interface IOperatorRegistry {
    function getQuorumBitmapAtBlockNumberByIndex(bytes32 operatorId, uint32 blockNumber, uint256 index)
        external
        view
        returns (uint192);
    function getApkHashAtBlockNumberAndIndex(uint8 quorumNumber, uint32 blockNumber, uint256 index)
        external
        view
        returns (bytes24);
    function getTotalStakeAtBlockNumberFromIndex(uint8 quorumNumber, uint32 blockNumber, uint256 index)
        external
        view
        returns (uint96);
    function getStakeAtBlockNumberAndIndex(uint8 quorumNumber, uint32 blockNumber, bytes32 operatorId, uint256 index)
        external
        view
        returns (uint96);
}

/// @title AlignedServiceManager: the devnet's Aligned-style service manager.
/// @notice Batchers fund a balance and create tasks (NewBatchV3); the aggregator responds through EigenLayer's
///         NonSignerStakesAndSignature (as Aligned's pinned middleware fork: quorum 0 only, no quorumNumbers
///         argument) once signers hold at least 67% of the quorum's stake at the task's creation block
///         (BatchVerified), and is refunded the response's cost from the batcher's balance.
contract AlignedServiceManager {
    using BN254 for BN254.G1Point;

    uint256 public constant QUORUM_THRESHOLD_PERCENTAGE = 67;
    /// Gas the fee formula adds for what gasleft() cannot see (intrinsic cost, calldata, the refund transfer).
    uint256 public constant RESPOND_OVERHEAD_GAS = 70_000;
    uint8 private constant QUORUM_NUMBER = 0;

    struct BatchState {
        uint32 taskCreatedBlock;
        bool responded;
        uint256 respondToTaskFeeLimit;
    }

    /// EigenLayer's IBLSSignatureChecker.NonSignerStakesAndSignature; G2 coordinates in [imag, real] order.
    struct NonSignerStakesAndSignature {
        uint32[] nonSignerQuorumBitmapIndices;
        BN254.G1Point[] nonSignerPubkeys;
        BN254.G1Point[] quorumApks;
        BN254.G2Point apkG2;
        BN254.G1Point sigma;
        uint32[] quorumApkIndices;
        uint32[] totalStakeIndices;
        uint32[][] nonSignerStakeIndices;
    }

    struct QuorumStakeTotals {
        uint96[] signedStakeForQuorum;
        uint96[] totalStakeForQuorum;
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
    error InsufficientFunds(address batcher, uint256 required, uint256 available);
    error ExceededMaxRespondFee(uint256 respondToTaskFeeLimit, uint256 txCost);
    error InvalidQuorumThreshold(uint256 signedStake, uint256 totalStake);
    error InvalidDepositAmount(uint256 amount);
    error RefundFailed(address recipient, uint256 amount);
    error InputArrayLengthMismatch();
    error InputEmptyQuorumApks();
    error ReferenceBlockNotInPast(uint32 referenceBlockNumber, uint256 currentBlockNumber);
    error NonSignersNotSorted(uint256 index);
    error NonSignerNotRegistered(bytes32 operatorId, uint32 referenceBlockNumber);
    error QuorumApkMismatch(bytes24 givenApkHash, bytes24 registeredApkHash);
    error InvalidSignature();

    IOperatorRegistry public immutable registry;
    address public immutable alignedAggregator;

    /// batchIdentifierHash => state
    mapping(bytes32 => BatchState) public batchesState;
    /// Batcher => wei it holds here to pay for responses to its tasks.
    mapping(address => uint256) public batchersBalances;

    constructor(address registry_, address aggregator_) {
        registry = IOperatorRegistry(registry_);
        alignedAggregator = aggregator_;
    }

    /// keccak256(abi.encodePacked(batchMerkleRoot, senderAddress)): the message operators sign.
    function batchIdentifierHash(bytes32 batchMerkleRoot, address senderAddress) public pure returns (bytes32) {
        return keccak256(abi.encodePacked(batchMerkleRoot, senderAddress));
    }

    // ------------------------------------------------------------------ batcher balances

    receive() external payable {
        _deposit(msg.sender, msg.value);
    }

    function depositToBatcher(address account) external payable {
        _deposit(account, msg.value);
    }

    function _deposit(address account, uint256 amount) private {
        if (amount == 0) revert InvalidDepositAmount(amount);
        batchersBalances[account] += amount;
    }

    // ------------------------------------------------------------------ tasks

    /// Ether sent along is credited to the batcher's balance, as Aligned does.
    function createNewTask(bytes32 batchMerkleRoot, string calldata batchDataPointer, uint256 respondToTaskFeeLimit)
        external
        payable
    {
        bytes32 identifier = batchIdentifierHash(batchMerkleRoot, msg.sender);
        if (batchesState[identifier].taskCreatedBlock != 0) revert BatchAlreadySubmitted(identifier);
        if (msg.value > 0) batchersBalances[msg.sender] += msg.value;
        uint32 taskCreatedBlock = uint32(block.number);
        batchesState[identifier] = BatchState(taskCreatedBlock, false, respondToTaskFeeLimit);
        emit NewBatchV3(batchMerkleRoot, msg.sender, taskCreatedBlock, batchDataPointer, respondToTaskFeeLimit);
    }

    function respondToTaskV2(
        bytes32 batchMerkleRoot,
        address senderAddress,
        NonSignerStakesAndSignature calldata nonSignerStakesAndSignature
    ) external {
        uint256 initialGasLeft = gasleft();
        if (msg.sender != alignedAggregator) revert SenderIsNotAggregator(msg.sender, alignedAggregator);
        bytes32 identifier = batchIdentifierHash(batchMerkleRoot, senderAddress);
        BatchState storage state = batchesState[identifier];
        uint32 taskCreatedBlock = state.taskCreatedBlock;
        if (taskCreatedBlock == 0) revert BatchDoesNotExist(identifier);
        if (state.responded) revert BatchAlreadyResponded(identifier);
        uint256 feeLimit = state.respondToTaskFeeLimit;
        uint256 balance = batchersBalances[senderAddress];
        if (balance < feeLimit) revert InsufficientFunds(senderAddress, feeLimit, balance);

        (QuorumStakeTotals memory totals,) =
            checkSignatures(identifier, taskCreatedBlock, nonSignerStakesAndSignature);
        uint256 signedStake = totals.signedStakeForQuorum[0];
        uint256 totalStake = totals.totalStakeForQuorum[0];
        if (signedStake * 100 < totalStake * QUORUM_THRESHOLD_PERCENTAGE) {
            revert InvalidQuorumThreshold(signedStake, totalStake);
        }

        state.responded = true;
        emit BatchVerified(batchMerkleRoot, senderAddress);

        uint256 txCost = (initialGasLeft - gasleft() + RESPOND_OVERHEAD_GAS) * tx.gasprice;
        if (txCost > feeLimit) revert ExceededMaxRespondFee(feeLimit, txCost);
        batchersBalances[senderAddress] = balance - txCost;
        (bool paid,) = payable(msg.sender).call{value: txCost}("");
        if (!paid) revert RefundFailed(msg.sender, txCost);
    }

    // ------------------------------------------------------------------ signature checking

    /// EigenLayer's BLSSignatureChecker.checkSignatures for quorum 0 (Aligned's fork: no quorumNumbers): the
    /// signed and total stake at `referenceBlockNumber`, and the hash of the block and the non-signers' ids.
    /// Reverts unless `params` proves an aggregate signature on `msgHash` by every quorum member except the
    /// listed non-signers, with every history index valid at the reference block.
    function checkSignatures(bytes32 msgHash, uint32 referenceBlockNumber, NonSignerStakesAndSignature calldata params)
        public
        view
        returns (QuorumStakeTotals memory totals, bytes32 signatoryRecordHash)
    {
        uint256 nonSignerCount = params.nonSignerPubkeys.length;
        if (params.quorumApks.length == 0) revert InputEmptyQuorumApks();
        if (
            params.quorumApks.length != 1 || params.quorumApkIndices.length != 1
                || params.totalStakeIndices.length != 1 || params.nonSignerStakeIndices.length != 1
                || params.nonSignerQuorumBitmapIndices.length != nonSignerCount
                || params.nonSignerStakeIndices[0].length != nonSignerCount
        ) revert InputArrayLengthMismatch();
        if (referenceBlockNumber >= block.number) revert ReferenceBlockNotInPast(referenceBlockNumber, block.number);

        (bytes32[] memory nonSignerIds, BN254.G1Point memory nonSignerApk) =
            _nonSigners(referenceBlockNumber, params);

        BN254.G1Point memory quorumApk = params.quorumApks[0];
        bytes24 givenApkHash = bytes24(BN254.hashG1Point(quorumApk));
        bytes24 registeredApkHash = registry.getApkHashAtBlockNumberAndIndex(
            QUORUM_NUMBER, referenceBlockNumber, params.quorumApkIndices[0]
        );
        if (givenApkHash != registeredApkHash) revert QuorumApkMismatch(givenApkHash, registeredApkHash);

        totals = _stakeTotals(referenceBlockNumber, nonSignerIds, params);

        BN254.G1Point memory apk = quorumApk.plus(BN254.negate(nonSignerApk));
        if (!_verifyAggregate(msgHash, apk, params.apkG2, params.sigma)) revert InvalidSignature();
        signatoryRecordHash = keccak256(abi.encodePacked(referenceBlockNumber, nonSignerIds));
    }

    /// The non-signers' ids (strictly increasing, each registered in quorum 0 at the reference block by the
    /// bitmap entry given) and the sum of their keys.
    function _nonSigners(uint32 referenceBlockNumber, NonSignerStakesAndSignature calldata params)
        private
        view
        returns (bytes32[] memory ids, BN254.G1Point memory sum)
    {
        uint256 count = params.nonSignerPubkeys.length;
        ids = new bytes32[](count);
        for (uint256 i = 0; i < count; i++) {
            BN254.G1Point memory key = params.nonSignerPubkeys[i];
            bytes32 operatorId = BN254.hashG1Point(key);
            if (i != 0 && uint256(operatorId) <= uint256(ids[i - 1])) revert NonSignersNotSorted(i);
            ids[i] = operatorId;
            uint192 bitmap = registry.getQuorumBitmapAtBlockNumberByIndex(
                operatorId, referenceBlockNumber, params.nonSignerQuorumBitmapIndices[i]
            );
            if (bitmap & 1 == 0) revert NonSignerNotRegistered(operatorId, referenceBlockNumber);
            sum = sum.plus(key);
        }
    }

    /// Total stake at the reference block, and that minus the non-signers' stakes, each read by its index.
    function _stakeTotals(
        uint32 referenceBlockNumber,
        bytes32[] memory nonSignerIds,
        NonSignerStakesAndSignature calldata params
    ) private view returns (QuorumStakeTotals memory totals) {
        uint96 total = registry.getTotalStakeAtBlockNumberFromIndex(
            QUORUM_NUMBER, referenceBlockNumber, params.totalStakeIndices[0]
        );
        uint96 signed = total;
        uint32[] calldata stakeIndices = params.nonSignerStakeIndices[0];
        for (uint256 i = 0; i < nonSignerIds.length; i++) {
            signed -= registry.getStakeAtBlockNumberAndIndex(
                QUORUM_NUMBER, referenceBlockNumber, nonSignerIds[i], stakeIndices[i]
            );
        }
        totals.signedStakeForQuorum = new uint96[](1);
        totals.totalStakeForQuorum = new uint96[](1);
        totals.signedStakeForQuorum[0] = signed;
        totals.totalStakeForQuorum[0] = total;
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
